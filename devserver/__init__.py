"""devserver package."""

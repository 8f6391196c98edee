"""execution_history package."""

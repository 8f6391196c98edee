"""The revisions, oldest first by their ``down_revision`` chain (alembic ignores this file)."""

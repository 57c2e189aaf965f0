"""The revisions (alembic reads every file but this one)."""

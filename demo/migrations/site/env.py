"""Alembic environment of the demo site's database (see demo/migrations/__init__.py)."""
from demo.migrations import run_env

run_env("site")

"""Migrations of the demo site's database."""

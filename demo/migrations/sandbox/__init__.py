"""Migrations of the sandbox's database."""

"""Alembic migration scripts; shipped inside the package for ``jobs db upgrade``."""

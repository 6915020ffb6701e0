"""Database layer: tables, engines, migrations and bulk reads and writes."""

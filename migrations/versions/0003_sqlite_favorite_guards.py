"""reject orphan favorites on SQLite connections without foreign keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 17:45:00.000000

SQLite checks foreign keys only on connections that turn them on, and the
sqlite3 shell and most client libraries do not. Favorites are the table that
other systems write with plain SQL, so on SQLite these triggers reject a
favorite whose user or movie does not exist on every connection. PostgreSQL
always enforces the foreign keys and gets nothing here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDS = {
    "favorites_user_exists": ("user_id", "users"),
    "favorites_movie_exists": ("movie_id", "movies"),
}


def _trigger(name: str, column: str, parent: str, event: str) -> str:
    return f"""
CREATE TRIGGER {name}_on_{event.lower()} BEFORE {event} ON favorites
FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM {parent} WHERE {column} = NEW.{column})
BEGIN
    SELECT RAISE(ABORT,
        'FOREIGN KEY constraint failed: favorites.{column} is not in {parent}');
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, (column, parent) in GUARDS.items():
        for event in ("INSERT", "UPDATE"):
            op.execute(_trigger(name, column, parent, event))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in GUARDS:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER {name}_on_{event}")

"""Alembic environment for movie-recs.

``jobs db upgrade`` passes an open connection in ``config.attributes``. Run by
hand, the URL comes from ``-x database_url=...``, then ``sqlalchemy.url``,
then the ``DATABASE_URL`` environment variable, then the default SQLite file.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from db.engine import make_engine
from db.models import Base

DEFAULT_URL = "sqlite:///movie_recs.db"

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    """Leave the reader views out of autogenerate: they are not ORM tables."""
    return not (type_ == "table" and name in ("recommendations", "similar_movies"))


def database_url() -> str:
    """Pick the URL for a run by hand, in the documented order."""
    return (
        context.get_x_argument(as_dictionary=True).get("database_url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_URL
    )


def run_migrations(connection: Connection) -> None:
    """Configure the context on ``connection`` and run the migrations."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run against the passed-in connection, or one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(database_url())
    with engine.connect() as new_connection:
        run_migrations(new_connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them online")
run_online()

"""Engines from a database URL, with the SQLite settings the job relies on."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

# How long a SQLite connection waits for another writer's lock, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class InvalidDatabaseURL(ValueError):
    """A database URL that SQLAlchemy cannot parse or has no driver for."""


def parse_url(url: str | URL) -> URL:
    """Parse ``url`` and check that its backend is SQLite or PostgreSQL.

    Raises:
        InvalidDatabaseURL: the URL is malformed or names another backend.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidDatabaseURL(f"cannot parse database URL {url!r}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidDatabaseURL(
            f"database URL {mask_url(parsed)!r} names backend "
            f"{parsed.get_backend_name()!r}; use sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DBNAME"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # Plain "postgresql://" would pick psycopg2, which is not a dependency.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: str | URL) -> str:
    """Render ``url`` with its password replaced by ``***``, for logs and errors."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable database URL>"
    return url.render_as_string(hide_password=True)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite connections get foreign keys on, WAL journaling (readers never wait
    for the writer), a busy timeout, and real ``BEGIN`` statements so that a
    transaction is one consistent snapshot.

    Raises:
        InvalidDatabaseURL: the URL is malformed or its driver is not installed.
    """
    parsed = parse_url(url)
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise InvalidDatabaseURL(
            f"no driver for database URL {mask_url(parsed)!r}: {exc}"
        ) from exc
    except ModuleNotFoundError as exc:
        raise InvalidDatabaseURL(
            f"the driver for {mask_url(parsed)!r} is not installed ({exc.name}); "
            "install it with: pip install 'movie-recs[postgresql]'"
        ) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Autocommit at the driver level, so that the "begin" hook below
        # decides where transactions start (pysqlite would delay BEGIN until
        # the first write, breaking snapshot reads).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if _journal_mode(cursor) != "wal" and not _is_memory(engine):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Open a transaction that reads and then writes.

    On SQLite it starts with ``BEGIN IMMEDIATE``, which takes the write lock
    up front and so waits the busy timeout for another writer. A deferred
    transaction that read first fails at once with "database is locked" when
    another writer committed since its read. PostgreSQL needs nothing extra.
    """
    options = {"sqlite_begin": "IMMEDIATE"} if engine.dialect.name == "sqlite" else {}
    with engine.connect().execution_options(**options) as connection:
        with connection.begin():
            yield connection


def sqlite_file(engine: Engine) -> Path | None:
    """Return the file of a SQLite engine, or None for memory or another backend."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or _is_memory(engine) or database is None:
        return None
    if database.startswith("file:"):
        # A URI filename: the path ends at the query string.
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def _journal_mode(cursor: sqlite3.Cursor) -> str:
    row = cursor.execute("PRAGMA journal_mode").fetchone()
    return str(row[0]).lower()


def _is_memory(engine: Engine) -> bool:
    database = engine.url.database
    return database in (None, "", ":memory:")

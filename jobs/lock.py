"""The run lock: at most one ``run-once`` per database at a time.

PostgreSQL uses a session advisory lock; SQLite uses ``flock`` on a file next
to the database. Both are released by the operating system or the server when
the holding process dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from db.engine import sqlite_file
from jobs.errors import DatabaseError, LockedError

log = logging.getLogger(__name__)

# Advisory lock key: the bytes of "mvrecs01" read as a big-endian int64.
ADVISORY_LOCK_KEY = int.from_bytes(b"mvrecs01", "big")


@contextmanager
def run_lock(engine: Engine) -> Iterator[None]:
    """Hold the run lock for the block.

    Raises:
        LockedError: another process holds it; the caller must not train.
    """
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
    else:
        with _file_lock(_lock_path(engine)):
            yield


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    # A dedicated connection, outside any transaction, holds the session lock.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        acquired = conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        ).scalar_one()
        if not acquired:
            raise LockedError(
                "another run holds the run lock (PostgreSQL advisory lock "
                f"{ADVISORY_LOCK_KEY}); not training. It is released when that "
                "run ends or its process dies."
            )
        try:
            yield
        finally:
            _advisory_unlock(conn)


def _advisory_unlock(conn: Connection) -> None:
    try:
        conn.execute(
            text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
        )
    except OperationalError as exc:
        # The connection is gone, and the server released the lock with it.
        log.warning("could not release the run lock explicitly: %s", exc)


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseError(
            f"cannot open the run lock file {path}: {exc.strerror}; the folder of "
            "the SQLite database must be writable"
        ) from exc
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another run holds the run lock {path}; not training. "
                "It is released when that run ends or its process dies."
            ) from None
        yield
    finally:
        os.close(descriptor)


def _lock_path(engine: Engine) -> Path | None:
    """Return ``<database file>.lock``, or None for an in-memory database."""
    database = sqlite_file(engine)
    if database is None:
        return None
    # Resolve links, so that every path to one file shares one lock.
    path = database.resolve()
    return path.with_name(path.name + ".lock")

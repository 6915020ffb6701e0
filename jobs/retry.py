"""Transient database errors, and retrying a job after one with backoff."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from jobs.control import RunStopped

try:
    import psycopg
except ImportError:  # the PostgreSQL driver is an optional extra
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """Return whether ``error`` is a database error that may pass on a retry.

    Transient are every psycopg ``OperationalError`` (connection refused or
    lost, server shutting down, serialization failure), any error after which
    SQLAlchemy invalidated the connection, and SQLite's "database is locked".
    The error, its driver error (``.orig``) and its causes are all checked.
    """
    for candidate in _error_chain(error):
        if isinstance(candidate, DBAPIError) and candidate.connection_invalidated:
            return True
        if psycopg is not None and isinstance(candidate, psycopg.OperationalError):
            return True
        if isinstance(candidate, sqlite3.OperationalError) and "locked" in str(
            candidate
        ):
            return True
    return False


def _error_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        candidate = pending.pop()
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        yield candidate
        orig = getattr(candidate, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            candidate.__cause__,
            candidate.__context__,
        ]


def call_with_retries(
    job: Callable[[], T],
    *,
    name: str,
    retries: int,
    backoff_seconds: float,
    stop_event: threading.Event,
) -> T:
    """Call ``job``, retrying up to ``retries`` times after a transient error.

    The first wait is ``backoff_seconds`` and each further wait doubles.

    Raises:
        RunStopped: ``stop_event`` was set while waiting to retry.
        Exception: whatever ``job`` raised last, when the error is not
            transient or the retries are used up.
    """
    attempt = 0
    while True:
        try:
            return job()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            delay = backoff_seconds * 2**attempt
            attempt += 1
            log.warning(
                "%s failed with a transient database error (attempt %d of %d), "
                "retrying in %.1f s: %s",
                name,
                attempt,
                retries + 1,
                delay,
                first_line(exc),
            )
            if stop_event.wait(delay):
                raise RunStopped(f"stopped while waiting to retry {name}") from exc


def first_line(error: BaseException) -> str:
    """Return the first line of ``error``'s message, prefixed with its type."""
    orig = getattr(error, "orig", None)
    message = str(orig if orig is not None else error).strip()
    lines = message.splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")

"""Logging set-up for the command line, and the run_id carried by every record."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

CURRENT_RUN_ID: ContextVar[str] = ContextVar("run_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s [run %(run_id)s] %(name)s: %(message)s"


class RunIdFilter(logging.Filter):
    """Add the current ``run_id`` to each record as ``record.run_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the run id; never drop the record."""
        record.run_id = CURRENT_RUN_ID.get()
        return True


@contextmanager
def run_context(run_id: int) -> Iterator[None]:
    """Tag every log record written inside the block with ``run_id``."""
    token = CURRENT_RUN_ID.set(str(run_id))
    try:
        yield
    finally:
        CURRENT_RUN_ID.reset(token)


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send log records to stderr: INFO by default, DEBUG with ``verbose``."""
    level = logging.INFO
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RunIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party INFO lines repeat what the job logs itself; --verbose shows them.
    third_party = logging.DEBUG if verbose else logging.WARNING
    for name in ("implicit", "alembic"):
        logging.getLogger(name).setLevel(third_party)
    # jobs.schedule logs missed and skipped jobs itself, in this project's words.
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if verbose else logging.ERROR
    )
    # At INFO or DEBUG, SQLAlchemy logs every statement and row: never here.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)

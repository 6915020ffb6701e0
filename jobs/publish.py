"""Run records, result rows, the published-run flip and pruning of old runs.

A run's rows are invisible to readers until ``publish_run`` points the single
``published_run`` row at it, in the same transaction that marks the run
succeeded. A failed run's rows are deleted and the previous run stays published.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, insert, select, update

from db.bulk import insert_rows
from db.models import (
    ModelRun,
    PublishedRun,
    RecommendationRow,
    RunModel,
    SimilarMovieRow,
)

log = logging.getLogger(__name__)

# Maximum length of the error text stored in model_runs.error.
MAX_ERROR_CHARS = 4_000


def utc_now() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def start_run(engine: Engine, settings: dict[str, Any]) -> int:
    """Insert a ``running`` record for this process and return its run_id."""
    with engine.begin() as connection:
        run_id = connection.execute(
            insert(ModelRun)
            .values(
                status="running",
                started_at=utc_now(),
                hostname=socket.gethostname(),
                pid=os.getpid(),
                settings=settings,
            )
            .returning(ModelRun.run_id)
        ).scalar_one()
    return int(run_id)


def mark_abandoned(engine: Engine) -> list[int]:
    """Mark every ``running`` run abandoned and delete its rows.

    Call only while holding the run lock: then no other process is running,
    so a ``running`` record was left by a process that died.
    """
    with engine.begin() as connection:
        run_ids = list(
            connection.execute(
                select(ModelRun.run_id).where(ModelRun.status == "running")
            ).scalars()
        )
        if not run_ids:
            return []
        connection.execute(
            update(ModelRun)
            .where(ModelRun.run_id.in_(run_ids))
            .values(
                status="abandoned",
                finished_at=utc_now(),
                error="the process ended before the run finished "
                "(killed, crashed or lost power); found by a later run",
            )
        )
        _delete_rows(connection, run_ids)
    log.warning("marked %d abandoned run(s) left running: %s", len(run_ids), run_ids)
    return run_ids


def write_rows(
    connection: Connection,
    table: str,
    run_id: int,
    batches: Iterable[dict[str, np.ndarray]],
) -> int:
    """Insert result rows of ``run_id`` batch by batch; return the row count."""
    total = 0
    for columns in batches:
        n_rows = len(next(iter(columns.values())))
        with_run = {"run_id": np.full(n_rows, run_id, dtype=np.int64), **columns}
        total += insert_rows(connection, table, with_run)
    return total


def publish_run(engine: Engine, run_id: int, record: dict[str, Any]) -> None:
    """Mark ``run_id`` succeeded and make it the published run, atomically.

    Args:
        engine: the database.
        run_id: a run whose rows are all written.
        record: further ``model_runs`` columns (counts, timings, metrics).
    """
    now = utc_now()
    with engine.begin() as connection:
        connection.execute(
            update(ModelRun)
            .where(ModelRun.run_id == run_id)
            .values(status="succeeded", finished_at=now, **record)
        )
        updated = connection.execute(
            update(PublishedRun)
            .where(PublishedRun.slot == 1)
            .values(run_id=run_id, published_at=now)
        ).rowcount
        if updated == 0:
            connection.execute(
                insert(PublishedRun).values(slot=1, run_id=run_id, published_at=now)
            )


def fail_run(
    engine: Engine,
    run_id: int,
    error: str,
    record: dict[str, Any],
    status: str = "failed",
) -> None:
    """Mark ``run_id`` failed with ``error`` and delete its unpublished rows.

    ``status="abandoned"`` records a run that was stopped on purpose.
    """
    with engine.begin() as connection:
        connection.execute(
            update(ModelRun)
            .where(ModelRun.run_id == run_id)
            .values(
                status=status,
                finished_at=utc_now(),
                error=error[:MAX_ERROR_CHARS],
                **record,
            )
        )
        _delete_rows(connection, [run_id])


def prune_runs(engine: Engine, keep: int) -> list[int]:
    """Delete the result rows of all but the newest ``keep`` succeeded runs.

    The published run is always kept, and the ``model_runs`` records stay as
    the job's history. Returns the run_ids whose rows were deleted.
    """
    with engine.begin() as connection:
        published = connection.execute(select(PublishedRun.run_id)).scalar()
        succeeded = list(
            connection.execute(
                select(ModelRun.run_id)
                .where(ModelRun.status == "succeeded")
                .order_by(ModelRun.run_id.desc())
            ).scalars()
        )
        old = [run_id for run_id in succeeded[keep:] if run_id != published]
        if old:
            _delete_rows(connection, old)
    if old:
        log.info("pruned the rows of %d old run(s): %s", len(old), old)
    return old


def _delete_rows(connection: Connection, run_ids: list[int]) -> None:
    for table in (RecommendationRow, SimilarMovieRow, RunModel):
        connection.execute(delete(table).where(table.run_id.in_(run_ids)))

"""Each run's trained model, kept in ``run_models`` so that ``refresh`` can use it.

A row contains the item factors, the movie_id of each item position, the
positives per item (for popular lists) and the settings that shaped them.
Arrays travel as ``np.save`` bytes. Times come from the database clock, the
same clock that stamps ``ratings.changed_at`` and ``favorites.created_at``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select, update

from db.models import RunModel
from jobs.confidence import Weighting
from jobs.config import ModelSettings


@dataclass(frozen=True)
class SavedModel:
    """A run's model as ``refresh`` needs it."""

    run_id: int
    factors: int
    regularization: float
    alpha: float
    min_rating: float
    favorite_weight: float
    weighting: Weighting
    item_factors: np.ndarray  # float32, shape (n_items, factors)
    movie_ids: np.ndarray  # int64, shape (n_items,), ascending
    item_support: np.ndarray  # int64, shape (n_items,)
    inputs_as_of: datetime
    refreshed_as_of: datetime | None

    @property
    def lists_as_of(self) -> datetime:
        """Database time of the newest snapshot that the run's lists reflect."""
        return self.refreshed_as_of or self.inputs_as_of


def database_now(connection: Connection) -> datetime:
    """Return the database's ``CURRENT_TIMESTAMP`` as an aware UTC datetime.

    SQLite's clock is the local machine's, in UTC and whole seconds;
    PostgreSQL's is the server's time at the start of the transaction.
    """
    value = connection.execute(select(func.current_timestamp())).scalar_one()
    return _as_utc(value)


def save_run_model(
    engine: Engine,
    run_id: int,
    item_factors: np.ndarray,
    movie_ids: np.ndarray,
    settings: ModelSettings,
    weighting: Weighting,
    inputs_as_of: datetime,
) -> None:
    """Store the model of ``run_id``.

    Args:
        engine: the database.
        run_id: the run that trained the model.
        item_factors: float32, shape ``(n_items, factors)``.
        movie_ids: int64, shape ``(n_items,)``, the movie_id of each item_idx.
        settings: the model settings of the run.
        weighting: the confidence scheme and its figures, with the positives
            per item.
        inputs_as_of: database time at or before the run's snapshot read.
    """
    with engine.begin() as connection:
        connection.execute(
            insert(RunModel).values(
                run_id=run_id,
                factors=int(item_factors.shape[1]),
                regularization=settings.regularization,
                alpha=settings.alpha,
                min_rating=settings.min_rating,
                favorite_weight=settings.favorite_weight,
                item_factors=_to_bytes(item_factors.astype(np.float32)),
                movie_ids=_to_bytes(movie_ids.astype(np.int64)),
                item_support=_to_bytes(weighting.item_support.astype(np.int64)),
                confidence=weighting.scheme,
                confidence_figures=weighting.record(),
                inputs_as_of=_as_utc(inputs_as_of),
            )
        )


def load_run_model(connection: Connection, run_id: int) -> SavedModel | None:
    """Return the stored model of ``run_id``, or None when the run stored none."""
    table = RunModel.__table__
    row = connection.execute(
        select(table).where(table.c.run_id == run_id)
    ).one_or_none()
    if row is None:
        return None
    item_support = _from_bytes(row.item_support)
    figures = row.confidence_figures or {}
    weighting = Weighting(
        scheme=row.confidence,
        n_users=int(figures.get("n_users", 0)),
        average_strength=float(figures.get("average_strength", 0.0)),
        item_support=item_support,
    )
    return SavedModel(
        run_id=row.run_id,
        factors=row.factors,
        regularization=row.regularization,
        alpha=row.alpha,
        min_rating=row.min_rating,
        favorite_weight=row.favorite_weight,
        weighting=weighting,
        item_factors=_from_bytes(row.item_factors),
        movie_ids=_from_bytes(row.movie_ids),
        item_support=item_support,
        inputs_as_of=_as_utc(row.inputs_as_of),
        refreshed_as_of=(
            None if row.refreshed_as_of is None else _as_utc(row.refreshed_as_of)
        ),
    )


def mark_refreshed(connection: Connection, run_id: int, as_of: datetime) -> None:
    """Record that the lists of ``run_id`` now reflect the inputs as of ``as_of``."""
    connection.execute(
        update(RunModel)
        .where(RunModel.run_id == run_id)
        .values(refreshed_as_of=_as_utc(as_of))
    )


def _to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _from_bytes(value: bytes | memoryview) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(bytes(value)), allow_pickle=False)
    return array


def _as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything this project writes is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)

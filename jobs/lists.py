"""Turn ranked positions from the model into result rows keyed by database ids."""

from __future__ import annotations

import numpy as np

from jobs.dataset import Interactions
from jobs.model import RankedBatch

Columns = dict[str, np.ndarray]


def recommendation_columns(
    batch: RankedBatch,
    interactions: Interactions,
    source: str,
    because: np.ndarray | None = None,
) -> Columns:
    """Return ``recommendation_rows`` columns (without run_id) for a user batch.

    Ranks start at 1 for each user and follow the batch order; invalid
    (padding) entries are dropped, so a short list stays short. ``because``
    holds, per entry of the batch, the item position of the user's positive
    that contributed most; without it ``because_movie_id`` is left NULL.

    Raises:
        ValueError: ``because`` has no positive (-1) for a listed entry.
    """
    owner, rank, item = _flatten(batch)
    columns = {
        "user_id": interactions.user_ids[owner],
        "rank": rank,
        "movie_id": interactions.movie_ids[item],
        "score": batch.scores[batch.valid].astype(np.float64),
        "source": np.full(len(rank), source, dtype=object),
    }
    if because is not None:
        positions = because[batch.valid]
        if len(positions) and positions.min() < 0:
            raise ValueError("a listed movie has no contributing positive")
        columns["because_movie_id"] = interactions.movie_ids[positions]
    return columns


def similar_columns(batch: RankedBatch, interactions: Interactions) -> Columns:
    """Return ``similar_movie_rows`` columns (without run_id) for an item batch."""
    owner, rank, item = _flatten(batch)
    return {
        "movie_id": interactions.movie_ids[owner],
        "rank": rank,
        "similar_movie_id": interactions.movie_ids[item],
        "score": batch.scores[batch.valid].astype(np.float64),
    }


def _flatten(batch: RankedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (row position, 1-based rank, item position) of each valid entry."""
    # Valid entries are a prefix of each row, so their column index + 1 is the rank.
    row_index, column_index = np.nonzero(batch.valid)
    owner = batch.rows[row_index]
    rank = (column_index + 1).astype(np.int64)
    item = batch.ids[row_index, column_index]
    return owner, rank, item

"""Read one consistent snapshot of the inputs and build the user x movie matrices.

Positions (``user_idx``, ``item_idx``) exist only here and in ``jobs.model``;
the id arrays map them back to ``user_id`` and ``movie_id``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sqlalchemy import Engine

from db.bulk import read_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Column arrays of the input tables, read in one transaction."""

    user_ids: np.ndarray  # int64, every user in `users`, ascending
    catalogue_ids: np.ndarray  # int64, every movie in `movies`, ascending
    rating_user_ids: np.ndarray  # int64
    rating_movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32 stars
    favorite_user_ids: np.ndarray  # int64
    favorite_movie_ids: np.ndarray  # int64

    @property
    def n_ratings(self) -> int:
        """Number of rating rows."""
        return len(self.ratings)

    @property
    def n_favorites(self) -> int:
        """Number of favorite rows."""
        return len(self.favorite_user_ids)


@dataclass(frozen=True)
class Interactions:
    """The training matrix and what each position stands for.

    ``user_items`` has shape ``(n_users, n_items)``, float32, CSR: row
    ``user_idx`` is ``user_ids[user_idx]``, column ``item_idx`` is
    ``movie_ids[item_idx]``, and a stored value is a positive's confidence.
    ``seen`` has the same shape and marks every rated (at any rating) or
    favorited movie, for filtering recommendations.
    """

    user_ids: np.ndarray  # int64, shape (n_users,)
    movie_ids: np.ndarray  # int64, shape (n_items,), movies with >= 1 positive
    user_items: sp.csr_matrix
    seen: sp.csr_matrix

    @property
    def n_users(self) -> int:
        """Number of matrix rows: every user in the snapshot."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of matrix columns: movies with at least one positive."""
        return len(self.movie_ids)

    def item_support(self) -> np.ndarray:
        """Return the number of positives per item, int64, shape ``(n_items,)``."""
        # Counting column indices avoids copying the matrix to CSC, which a
        # run otherwise did three times (about a second each at 20M ratings).
        counts = np.bincount(self.user_items.indices, minlength=self.n_items)
        return counts.astype(np.int64)

    def users_with_positives(self) -> np.ndarray:
        """Return a bool mask, shape ``(n_users,)``, of users with a positive."""
        return np.diff(self.user_items.indptr) > 0


def read_snapshot(engine: Engine) -> Snapshot:
    """Read users, ratings and favorites as one consistent snapshot.

    SQLite gives a transaction one snapshot once it starts reading (the
    engine issues ``BEGIN``); PostgreSQL needs ``REPEATABLE READ`` for that.
    """
    options = {}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect().execution_options(**options) as connection:
        with connection.begin():
            users = read_columns(
                connection,
                "SELECT user_id FROM users ORDER BY user_id",
                {"user_id": np.int64},
            )
            movies = read_columns(
                connection,
                "SELECT movie_id FROM movies ORDER BY movie_id",
                {"movie_id": np.int64},
            )
            ratings = read_columns(
                connection,
                "SELECT user_id, movie_id, rating FROM ratings",
                {"user_id": np.int64, "movie_id": np.int64, "rating": np.float32},
            )
            favorites = read_columns(
                connection,
                "SELECT user_id, movie_id FROM favorites",
                {"user_id": np.int64, "movie_id": np.int64},
            )
    return Snapshot(
        user_ids=users["user_id"],
        catalogue_ids=movies["movie_id"],
        rating_user_ids=ratings["user_id"],
        rating_movie_ids=ratings["movie_id"],
        ratings=ratings["rating"],
        favorite_user_ids=favorites["user_id"],
        favorite_movie_ids=favorites["movie_id"],
    )


def build_interactions(
    snapshot: Snapshot, min_rating: float, favorite_weight: float
) -> Interactions:
    """Turn a snapshot into the confidence matrix and the seen matrix.

    A rating of at least ``min_rating`` is a positive with its star value as
    confidence. A favorite is a positive with ``favorite_weight``, and a pair
    that is both gets ``max(rating, favorite_weight)``. Lower ratings are not
    positives but still count as seen.
    """
    snapshot = drop_orphans(snapshot)
    kept = snapshot.ratings >= min_rating
    user_ids = snapshot.user_ids
    movie_ids = np.unique(
        np.concatenate([snapshot.rating_movie_ids[kept], snapshot.favorite_movie_ids])
    )
    # Movies without a positive are not columns; their ratings only count as
    # seen, and an unseen column can never be recommended anyway.
    rated = np.isin(snapshot.rating_movie_ids, movie_ids)
    user_items, seen = confidence_and_seen(
        (len(user_ids), len(movie_ids)),
        Pairs(
            np.searchsorted(user_ids, snapshot.rating_user_ids[rated]),
            np.searchsorted(movie_ids, snapshot.rating_movie_ids[rated]),
            snapshot.ratings[rated],
        ),
        Pairs(
            np.searchsorted(user_ids, snapshot.favorite_user_ids),
            np.searchsorted(movie_ids, snapshot.favorite_movie_ids),
            np.ones(snapshot.n_favorites, dtype=np.float32),
        ),
        min_rating,
        favorite_weight,
    )
    interactions = Interactions(user_ids, movie_ids, user_items, seen)
    log.debug(
        "user_items %s with %d positives; seen has %d pairs",
        user_items.shape,
        user_items.nnz,
        seen.nnz,
    )
    return interactions


@dataclass(frozen=True)
class Pairs:
    """(user_idx, item_idx, value) triples; a table's key makes each pair unique."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def confidence_and_seen(
    shape: tuple[int, int],
    ratings: Pairs,
    favorites: Pairs,
    min_rating: float,
    favorite_weight: float,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Build the strength matrix and the seen matrix from rating and favorite pairs.

    A rating of at least ``min_rating`` is a positive with its star value as
    strength. A favorite has ``favorite_weight``, and a pair that is both gets
    the larger. Seen marks every rated (at any rating) or favorited pair.

    Returns:
        ``(user_items, seen)``: CSR float32 of ``shape``, indices sorted.
    """
    positive = ratings.values >= min_rating
    rated = sp.csr_matrix(
        (
            ratings.values[positive].astype(np.float32),
            (ratings.rows[positive], ratings.cols[positive]),
        ),
        shape=shape,
        dtype=np.float32,
    )
    user_items = rated
    if len(favorites.rows):
        favored = sp.csr_matrix(
            (
                np.full(len(favorites.rows), favorite_weight, dtype=np.float32),
                (favorites.rows, favorites.cols),
            ),
            shape=shape,
            dtype=np.float32,
        )
        user_items = sp.csr_matrix(rated.maximum(favored), dtype=np.float32)
    user_items.sort_indices()

    seen_rows = np.concatenate([ratings.rows, favorites.rows])
    seen_cols = np.concatenate([ratings.cols, favorites.cols])
    seen = sp.csr_matrix(
        (np.ones(len(seen_rows), dtype=np.float32), (seen_rows, seen_cols)),
        shape=shape,
    )
    # A pair both rated and favorited was summed to 2.
    seen.data[:] = 1.0
    seen.sort_indices()
    return user_items, seen


def drop_orphans(snapshot: Snapshot) -> Snapshot:
    """Drop ratings and favorites whose user or movie is not in the snapshot.

    Foreign keys prevent such rows, but SQLite enforces them only on
    connections that turn them on, which the ``sqlite3`` shell does not by
    default. Each dropped row is counted in a warning with the first ids.
    """
    rating_ok = _known_pairs(
        snapshot, snapshot.rating_user_ids, snapshot.rating_movie_ids, "ratings"
    )
    favorite_ok = _known_pairs(
        snapshot, snapshot.favorite_user_ids, snapshot.favorite_movie_ids, "favorites"
    )
    if rating_ok.all() and favorite_ok.all():
        return snapshot
    return dataclasses.replace(
        snapshot,
        rating_user_ids=snapshot.rating_user_ids[rating_ok],
        rating_movie_ids=snapshot.rating_movie_ids[rating_ok],
        ratings=snapshot.ratings[rating_ok],
        favorite_user_ids=snapshot.favorite_user_ids[favorite_ok],
        favorite_movie_ids=snapshot.favorite_movie_ids[favorite_ok],
    )


def _known_pairs(
    snapshot: Snapshot, user_ids: np.ndarray, movie_ids: np.ndarray, table: str
) -> np.ndarray:
    known = np.isin(user_ids, snapshot.user_ids) & np.isin(
        movie_ids, snapshot.catalogue_ids
    )
    n_orphans = int((~known).sum())
    if n_orphans:
        first_users = user_ids[~known][:3].tolist()
        first_movies = movie_ids[~known][:3].tolist()
        examples = list(zip(first_users, first_movies, strict=True))
        log.warning(
            "skipped %d %s rows whose user or movie does not exist "
            "(user_id, movie_id): %s; delete them, and enable foreign keys "
            "(PRAGMA foreign_keys = ON) on SQLite connections that write",
            n_orphans,
            table,
            examples,
        )
    return known

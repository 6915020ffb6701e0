"""``refresh``: new lists for users whose inputs changed, without retraining.

A user is refreshed when, in one snapshot of the inputs,

* the published run has no list for them (a user added since), or
* one of their ratings has ``changed_at``, or one of their favorites has
  ``created_at``, at or after ``lists_as_of - CHANGE_OVERLAP_SECONDS``.

``lists_as_of`` is the database time of the newest snapshot that the
published lists reflect: the full run's, or the last refresh's. The users'
factors are solved against the published run's item factors, and their rows
of the published run are replaced in one transaction, so a reader sees a
user's old list or new list, never a mix and never nothing.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, delete, select, text

from db.migrate import require_current
from db.models import ModelRun, PublishedRun, RecommendationRow
from jobs import lists, model, publish, run_models
from jobs.control import RunControl
from jobs.dataset import Interactions, Pairs, confidence_and_seen
from jobs.errors import NothingToDoError
from jobs.lock import run_lock
from jobs.logs import run_context
from jobs.run_models import SavedModel

log = logging.getLogger(__name__)

# How far before lists_as_of a change still counts. A row is stamped when its
# statement runs (on PostgreSQL, when its transaction starts) but is visible
# only after commit, so a write that commits just after a snapshot can carry
# an earlier stamp than that snapshot. Users inside the overlap are refreshed
# twice, which changes nothing for them.
# NOTE: a writer transaction open longer than this can be missed by refresh;
# the next full run still includes its rows.
CHANGE_OVERLAP_SECONDS = 120

# Users per IN list of a query, below SQLite's limit on bound parameters.
BATCH_USERS = 1_000

# Users the published run has no list for. :run_id is the published run.
# NOTE: a user who has seen every movie the model was trained on has an empty
# list, so no rows, and is recomputed by every refresh (to the same empty list).
NEW_USERS_SQL = """
SELECT u.user_id FROM users AS u
WHERE NOT EXISTS (
    SELECT 1 FROM recommendation_rows AS r
    WHERE r.run_id = :run_id AND r.user_id = u.user_id
)
"""
# Users with a rating or favorite written at or after :since. The join drops
# rows whose user does not exist, which a writer with foreign keys off (such
# as the sqlite3 shell) can leave behind.
CHANGED_INPUT_SQL = """
SELECT c.user_id FROM (
    SELECT user_id FROM ratings WHERE changed_at >= :since
    UNION
    SELECT user_id FROM favorites WHERE created_at >= :since
) AS c
JOIN users AS u ON u.user_id = c.user_id
"""


@dataclass
class RefreshSummary:
    """Counts and times of one refresh; ``n_users`` is 0 when no user changed."""

    run_id: int
    # Changes stamped at or after this database time counted.
    since: datetime
    # Database time of this refresh's snapshot.
    as_of: datetime | None = None
    n_users: int = 0
    # Users who had no list in the published run.
    n_new_users: int = 0
    n_model: int = 0
    n_popular: int = 0
    n_rows: int = 0
    # Positives (ratings >= min_rating, favorites) left out because the run's
    # model has no factors for their movie.
    n_ignored: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class UserInputs:
    """The ratings and favorites of some users, read in one snapshot."""

    as_of: datetime
    user_ids: np.ndarray  # int64, ascending
    n_new_users: int
    rating_user_ids: np.ndarray  # int64
    rating_movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32 stars
    favorite_user_ids: np.ndarray  # int64
    favorite_movie_ids: np.ndarray  # int64


def refresh(engine: Engine, control: RunControl | None = None) -> RefreshSummary:
    """Recompute and publish the lists of users whose inputs changed.

    Holds the run lock, so it never overlaps a full run or another refresh.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
        LockedError: a run or another refresh holds the run lock.
        NothingToDoError: no run is published yet, or the published run
            stored no model.
        RunStopped: ``control`` asked to stop; nothing was written.
    """
    started = time.perf_counter()
    require_current(engine)
    with run_lock(engine):
        publish.mark_abandoned(engine)
        saved, n = _published_model(engine)
        with run_context(saved.run_id):
            summary = RefreshSummary(saved.run_id, since=_since(saved))
            changes = _read_changes(engine, saved.run_id, summary.since)
            summary.as_of = changes.as_of
            summary.n_users = len(changes.user_ids)
            summary.n_new_users = changes.n_new_users
            columns = _rank(saved, changes, n, summary) if summary.n_users else []
            if control is not None:
                control.check()
            summary.n_rows = _replace_lists(engine, saved.run_id, changes, columns)
            summary.seconds = time.perf_counter() - started
            _log_summary(summary)
    return summary


def _published_model(engine: Engine) -> tuple[SavedModel, int]:
    """Return the published run's model and its list length."""
    with engine.connect() as connection:
        run_id = connection.execute(select(PublishedRun.run_id)).scalar()
        if run_id is None:
            raise NothingToDoError(
                "no run has been published yet, so there is no model to refresh "
                "from; run: python -m jobs run-once"
            )
        saved = run_models.load_run_model(connection, run_id)
        if saved is None:
            raise NothingToDoError(
                f"the published run {run_id} stored no model (it ran before "
                "database revision 0002); the next run-once stores one"
            )
        run_settings = connection.execute(
            select(ModelRun.settings).where(ModelRun.run_id == run_id)
        ).scalar_one()
    return saved, int(run_settings["output"]["n"])


def _since(saved: SavedModel) -> datetime:
    since = saved.lists_as_of - timedelta(seconds=CHANGE_OVERLAP_SECONDS)
    # Whole seconds, because SQLite's CURRENT_TIMESTAMP has no fraction.
    return since.replace(microsecond=0)


def _read_changes(engine: Engine, run_id: int, since: datetime) -> UserInputs:
    """Find the changed users and read their ratings and favorites, in one snapshot."""
    options = {}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    params = {"run_id": run_id, "since": _time_param(engine, since)}
    with engine.connect().execution_options(**options) as connection:
        with connection.begin():
            as_of = run_models.database_now(connection)
            new_users = _ids(connection, NEW_USERS_SQL, params)
            user_ids = np.union1d(
                new_users, _ids(connection, CHANGED_INPUT_SQL, params)
            )
            return read_user_inputs(connection, user_ids, as_of, len(new_users))


def read_user_inputs(
    connection: Connection, user_ids: np.ndarray, as_of: datetime, n_new_users: int
) -> UserInputs:
    """Read the ratings and favorites of ``user_ids`` (int64, ascending)."""
    ratings = _rows_of_users(
        connection, "ratings", ("user_id", "movie_id", "rating"), user_ids
    )
    favorites = _rows_of_users(
        connection, "favorites", ("user_id", "movie_id"), user_ids
    ).astype(np.int64)
    return UserInputs(
        as_of=as_of,
        user_ids=user_ids,
        n_new_users=n_new_users,
        rating_user_ids=ratings[:, 0].astype(np.int64),
        rating_movie_ids=ratings[:, 1].astype(np.int64),
        ratings=ratings[:, 2].astype(np.float32),
        favorite_user_ids=favorites[:, 0],
        favorite_movie_ids=favorites[:, 1],
    )


def _rows_of_users(
    connection: Connection, table: str, columns: Sequence[str], user_ids: np.ndarray
) -> np.ndarray:
    """Read numeric ``columns`` of the users' rows in ``table``.

    Returns float64, shape ``(n_rows, len(columns))``; ids up to 2**53 stay exact.
    """
    query = text(
        f"SELECT {', '.join(columns)} FROM {table} WHERE user_id IN :user_ids"
    ).bindparams(bindparam("user_ids", expanding=True))
    blocks = [np.empty((0, len(columns)))]
    for start in range(0, len(user_ids), BATCH_USERS):
        chunk = user_ids[start : start + BATCH_USERS].tolist()
        result = connection.execute(query, {"user_ids": chunk})
        # Values stream from the rows into one array, without a list of tuples.
        flat = np.fromiter(itertools.chain.from_iterable(result), dtype=np.float64)
        blocks.append(flat.reshape(-1, len(columns)))
    return np.concatenate(blocks)


def _ids(connection: Connection, sql: str, params: Mapping[str, Any]) -> np.ndarray:
    values = connection.execute(text(sql), params).scalars().all()
    return np.unique(np.asarray(values, dtype=np.int64))


def _time_param(engine: Engine, moment: datetime) -> datetime | str:
    # SQLite compares the stored text; CURRENT_TIMESTAMP writes this layout,
    # and a bound datetime would add ".000000", which sorts after it.
    if engine.dialect.name == "sqlite":
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return moment


def _rank(
    saved: SavedModel, changes: UserInputs, n: int, summary: RefreshSummary
) -> list[lists.Columns]:
    """Rank movies for the changed users: fold-in for users with a positive,
    popularity for the rest, with the same rules as the full run."""
    interactions, summary.n_ignored = user_interactions(saved, changes)
    warm = interactions.users_with_positives()
    warm_idx = np.flatnonzero(warm).astype(np.int64)
    cold_idx = np.flatnonzero(~warm).astype(np.int64)
    summary.n_model, summary.n_popular = len(warm_idx), len(cold_idx)

    als = model.model_from_item_factors(
        saved.item_factors, regularization=saved.regularization, alpha=saved.alpha
    )
    confidences = saved.weighting.apply(interactions.user_items)
    model.fold_in_users(als, confidences)

    def batches() -> Iterator[lists.Columns]:
        for batch in model.recommend(als, warm_idx, interactions.seen, n):
            because = model.top_contributors(als, confidences, batch)
            yield lists.recommendation_columns(batch, interactions, "als", because)
        if len(cold_idx):
            popular = model.recommend_popular(
                saved.item_support, cold_idx, interactions.seen, n
            )
            yield lists.recommendation_columns(popular, interactions, "popular")

    return list(batches())


def user_interactions(
    saved: SavedModel, changes: UserInputs
) -> tuple[Interactions, int]:
    """Build the changed users' confidence and seen matrices over the run's movies.

    Returns the matrices and the number of positives left out because the
    run's model does not know their movie.
    """
    shape = (len(changes.user_ids), len(saved.movie_ids))
    rated_rows, rated_cols, rated_known = _positions(
        changes.user_ids,
        saved.movie_ids,
        changes.rating_user_ids,
        changes.rating_movie_ids,
    )
    fav_rows, fav_cols, fav_known = _positions(
        changes.user_ids,
        saved.movie_ids,
        changes.favorite_user_ids,
        changes.favorite_movie_ids,
    )

    user_items, seen = confidence_and_seen(
        shape,
        Pairs(
            rated_rows[rated_known],
            rated_cols[rated_known],
            changes.ratings[rated_known],
        ),
        Pairs(
            fav_rows[fav_known],
            fav_cols[fav_known],
            np.ones(int(fav_known.sum()), dtype=np.float32),
        ),
        saved.min_rating,
        saved.favorite_weight,
    )

    # Only positives are lost: a low rating on an unknown movie changes nothing,
    # because that movie cannot be recommended anyway.
    rated_positive = changes.ratings >= saved.min_rating
    ignored = int((~rated_known & rated_positive).sum() + (~fav_known).sum())
    interactions = Interactions(changes.user_ids, saved.movie_ids, user_items, seen)
    return interactions, ignored


def _positions(
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    pair_users: np.ndarray,
    pair_movies: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (user_idx, item_idx, known) of id pairs; ``known`` marks movies
    that ``movie_ids`` contains. Both id arrays are ascending."""
    rows = np.searchsorted(user_ids, pair_users)
    cols = np.searchsorted(movie_ids, pair_movies)
    cols = np.minimum(cols, len(movie_ids) - 1)
    known = movie_ids[cols] == pair_movies
    return rows, cols, known


def _replace_lists(
    engine: Engine, run_id: int, changes: UserInputs, columns: list[lists.Columns]
) -> int:
    """Swap the changed users' rows of ``run_id`` in one transaction.

    Returns the number of rows written.
    """
    user_ids = changes.user_ids.tolist()
    with engine.begin() as connection:
        for start in range(0, len(user_ids), BATCH_USERS):
            chunk = user_ids[start : start + BATCH_USERS]
            connection.execute(
                delete(RecommendationRow).where(
                    RecommendationRow.run_id == run_id,
                    RecommendationRow.user_id.in_(chunk),
                )
            )
        written = publish.write_rows(
            connection, "recommendation_rows", run_id, iter(columns)
        )
        run_models.mark_refreshed(connection, run_id, changes.as_of)
    return written


def _log_summary(summary: RefreshSummary) -> None:
    if summary.n_ignored:
        log.warning(
            "left out %d positive ratings and favorites of refreshed users on "
            "movies that run %d has no factors for; the next full run trains on "
            "them",
            summary.n_ignored,
            summary.run_id,
        )
    if not summary.n_users:
        log.debug("refresh: no user changed since %s", summary.since.isoformat())
        return
    log.info(
        "refreshed %d users (%d without a list) changed since %s: %d from the "
        "model, %d by popularity, %d rows in %.2f s",
        summary.n_users,
        summary.n_new_users,
        summary.since.isoformat(),
        summary.n_model,
        summary.n_popular,
        summary.n_rows,
        summary.seconds,
    )

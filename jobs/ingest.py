"""Load a MovieLens folder into the input tables in one transaction."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, text

from db.bulk import ChangeStamp, bulk_load, sqlite_trigger_dropped, upsert_rows
from db.models import Rating
from jobs.errors import DataError
from jobs.movielens import MovieLensData, pair_keys, read_movielens

log = logging.getLogger(__name__)


# The catalogue file of each layout, for error messages.
MOVIE_FILES = {"ml-1m": "movies.dat", "ml-100k": "u.item", "csv": "movies.csv"}

RATING_COLUMNS = {
    "user_id": np.int64,
    "movie_id": np.int64,
    "rating": np.float64,
    "rated_at": np.int64,
}

# The ratings upsert moves changed_at to the current time when a stored rating
# gets another value, which is what trigger ratings_changed_at (revision 0002)
# does.
CHANGED_AT_TRIGGER = "ratings_changed_at"
RATING_CHANGE_STAMP = ChangeStamp("changed_at", watched=("rating",))


@dataclass(frozen=True)
class IngestResult:
    """Counts of one ingest: rows read and rows that were not there before."""

    layout: str
    movies_read: int
    movies_new: int
    users_new: int
    ratings_read: int
    ratings_new: int
    seconds: float


def ingest(engine: Engine, source: Path) -> IngestResult:
    """Read a MovieLens folder or zip and upsert it into the input tables.

    Movies are inserted or updated by ``movie_id``, users inserted by
    ``user_id``, and ratings inserted or updated by ``(user_id, movie_id)``, so
    ingesting the same folder twice changes nothing. A stored rating that gets
    another value also gets a new ``changed_at``. Everything is written in
    one transaction: on any error the database is left as it was.

    Raises:
        DataError: the folder is not a MovieLens layout or a line is malformed.
    """
    started = time.perf_counter()
    data = read_movielens(source)
    log.info(
        "read %s layout from %s: %d movies, %d ratings in %.2f s",
        data.layout,
        source,
        len(data.movies),
        len(data.ratings),
        time.perf_counter() - started,
    )
    with bulk_load(engine, Rating.__table__) as connection:  # type: ignore[arg-type]
        before = _table_counts(connection)
        _write(connection, data)
        after = _table_counts(connection)
    seconds = time.perf_counter() - started
    result = IngestResult(
        layout=data.layout,
        movies_read=len(data.movies),
        movies_new=after["movies"] - before["movies"],
        users_new=after["users"] - before["users"],
        ratings_read=len(data.ratings),
        ratings_new=after["ratings"] - before["ratings"],
        seconds=seconds,
    )
    log.info(
        "ingested %s: %d new movies, %d new users, %d new ratings in %.2f s",
        source,
        result.movies_new,
        result.users_new,
        result.ratings_new,
        seconds,
    )
    return result


def _write(connection: Connection, data: MovieLensData) -> None:
    movies = data.movies
    ratings = data.ratings
    _check_titles_match(connection, data)
    upsert_rows(
        connection,
        "movies",
        {
            "movie_id": movies["movie_id"].to_numpy(np.int64),
            "title": movies["title"].to_numpy(object),
            "genres": movies["genres"].to_numpy(object),
        },
        key=["movie_id"],
        update=["title", "genres"],
    )
    user_ids = np.unique(ratings["user_id"].to_numpy(np.int64))
    upsert_rows(connection, "users", {"user_id": user_ids}, key=["user_id"])
    # Rows in primary-key order append to the B-tree instead of scattering.
    order = _primary_key_order(
        ratings["user_id"].to_numpy(np.int64), ratings["movie_id"].to_numpy(np.int64)
    )
    with _changed_at_trigger_dropped(connection):
        upsert_rows(
            connection,
            "ratings",
            {
                name: ratings[name].to_numpy(dtype)[order]
                for name, dtype in RATING_COLUMNS.items()
            },
            key=["user_id", "movie_id"],
            update=["rating", "rated_at"],
            stamp=RATING_CHANGE_STAMP,
        )
    if connection.dialect.name == "postgresql":
        _advance_identity(connection, "users", "user_id")
        _advance_identity(connection, "movies", "movie_id")


def _primary_key_order(user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    """Return the row order that sorts ratings by (user_id, movie_id)."""
    keys = pair_keys(user_ids, movie_ids)
    if keys is None:
        return np.lexsort((movie_ids, user_ids))
    # Stable, so ties keep file order as with np.lexsort. On ml-1m this takes
    # 0.03 s, and np.lexsort on the two id columns 0.15 s.
    return np.argsort(keys, kind="stable")


def _changed_at_trigger_dropped(
    connection: Connection,
) -> AbstractContextManager[None]:
    """Drop the changed_at trigger during the ratings upsert on SQLite.

    On SQLite the trigger made the ratings upsert of a first ml-1m load about
    1 s slower, although it updates no row then (3.0 s against 2.2 s of CPU
    with one row per statement, 2-core VM, SQLite 3.40). The upsert's
    ``RATING_CHANGE_STAMP`` does its work. On PostgreSQL the trigger runs only
    for rows whose rating changed, so it stays, and it sets the same time as
    the stamp.
    """
    if connection.dialect.name != "sqlite":
        return nullcontext()
    return sqlite_trigger_dropped(connection, CHANGED_AT_TRIGGER)


def _check_titles_match(connection: Connection, data: MovieLensData) -> None:
    """Reject movies whose id is stored under another title.

    MovieLens releases number movies differently (movie 2 is Jumanji in
    ml-1m but GoldenEye in ml-100k), so loading a second release into the
    same tables would file its ratings under the wrong titles.
    """
    rows = connection.execute(text("SELECT movie_id, title FROM movies"))
    stored: dict[int, str] = {int(movie_id): str(title) for movie_id, title in rows}
    if not stored:
        return
    conflicts = [
        (movie_id, title, stored[movie_id])
        for movie_id, title in zip(
            data.movies["movie_id"].tolist(), data.movies["title"].tolist(), strict=True
        )
        if movie_id in stored and stored[movie_id] != title
    ]
    if conflicts:
        movie_id, title, old_title = conflicts[0]
        raise DataError(
            f"movie_id {movie_id} is {title!r} here but {old_title!r} in the "
            f"database ({len(conflicts)} such conflicts); MovieLens releases number "
            "movies differently, so load each release into its own database "
            "(--database-url), or rename the movie in the database first",
            path=MOVIE_FILES[data.layout],
        )


def _advance_identity(connection: Connection, table: str, column: str) -> None:
    # Ingested rows carry explicit ids, which PostgreSQL's identity sequence
    # does not see. Move it past them, never backwards, so that a plain
    # `INSERT INTO users (name) ...` gets an id that was never used.
    sequence = f"pg_get_serial_sequence('{table}', '{column}')"
    connection.execute(
        text(
            f"SELECT setval({sequence}, GREATEST(nextval({sequence}), "
            f"(SELECT COALESCE(MAX({column}), 0) + 1 FROM {table})), false)"
        )
    )


def _table_counts(connection: Connection) -> dict[str, int]:
    counts = {}
    for table in ("movies", "users", "ratings"):
        counts[table] = connection.execute(
            text(f"SELECT COUNT(*) FROM {table}")
        ).scalar_one()
    return counts

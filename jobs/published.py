"""Read the published lists, with titles, for people at a terminal."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from jobs.errors import DataError, NothingToDoError
from jobs.favorites import load_title_index, require_user
from jobs.titles import Movie


@dataclass(frozen=True)
class ListedMovie:
    """One line of a printed list."""

    rank: int
    movie_id: int
    title: str
    score: float
    source: str | None = None
    # Title of the user's positive that contributed most, for model lists.
    because: str | None = None


def user_recommendations(
    engine: Engine, user: str, n: int
) -> tuple[int, list[ListedMovie]]:
    """Return the user_id of ``user`` and their top ``n`` published recommendations."""
    with engine.connect() as connection:
        user_id = require_user(connection, user)
        rows = connection.execute(
            text(
                "SELECT r.rank, r.movie_id, m.title, r.score, r.source, b.title "
                "FROM recommendations AS r JOIN movies AS m ON m.movie_id = r.movie_id "
                "LEFT JOIN movies AS b ON b.movie_id = r.because_movie_id "
                "WHERE r.user_id = :user_id AND r.rank <= :n ORDER BY r.rank"
            ),
            {"user_id": user_id, "n": n},
        ).all()
    return user_id, [ListedMovie(*row) for row in rows]


def why_no_list(engine: Engine, user_id: int, run_id: int) -> str:
    """Say why the published run has no recommendation for ``user_id``."""
    with engine.connect() as connection:
        n_movies = connection.execute(
            text("SELECT n_movies FROM model_runs WHERE run_id = :run_id"),
            {"run_id": run_id},
        ).scalar()
        n_seen = connection.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT movie_id FROM ratings "
                "WHERE user_id = :user_id UNION "
                "SELECT movie_id FROM favorites WHERE user_id = :user_id) AS seen"
            ),
            {"user_id": user_id},
        ).scalar_one()
    if n_movies is not None and n_seen >= n_movies:
        return "the user has seen every movie the model knows"
    return (
        f"run {run_id} has no list for this user, who was added or changed after "
        "it read its data; run: python -m jobs refresh (or wait for the next "
        "scheduled refresh)"
    )


def similar_movies(
    engine: Engine, title: str | None, n: int, movie_id: int | None = None
) -> tuple[int, str, list[ListedMovie]]:
    """Return the movie named by ``movie_id`` or ``title`` and its similar movies.

    Raises:
        DataError: the title is unknown or ambiguous, or the movie_id unknown.
    """
    with engine.connect() as connection:
        if movie_id is not None:
            movie = _movie_by_id(connection, movie_id)
        else:
            assert title is not None, "give a title or a movie_id"
            movie = load_title_index(connection).resolve(title)
        rows = connection.execute(
            text(
                "SELECT s.rank, s.similar_movie_id, m.title, s.score "
                "FROM similar_movies AS s "
                "JOIN movies AS m ON m.movie_id = s.similar_movie_id "
                "WHERE s.movie_id = :movie_id AND s.rank <= :n ORDER BY s.rank"
            ),
            {"movie_id": movie.movie_id, "n": n},
        ).all()
    return movie.movie_id, movie.title, [ListedMovie(*row) for row in rows]


def _movie_by_id(connection: Connection, movie_id: int) -> Movie:
    title = connection.execute(
        text("SELECT title FROM movies WHERE movie_id = :id"), {"id": movie_id}
    ).scalar()
    if title is None:
        raise DataError(f"movie_id {movie_id} not found in the movies table")
    return Movie(movie_id, str(title))


def published_run_id(engine: Engine) -> int | None:
    """Return the run_id the reader views show, or None before the first run."""
    with engine.connect() as connection:
        value = connection.execute(text("SELECT run_id FROM published_run")).scalar()
    return None if value is None else int(value)


def require_published(engine: Engine) -> int:
    """Return the published run_id.

    Raises:
        NothingToDoError: no run has been published yet.
    """
    run_id = published_run_id(engine)
    if run_id is None:
        raise NothingToDoError(
            "no run has been published yet; run: python -m jobs run-once"
        )
    return run_id

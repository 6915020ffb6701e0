"""Users by id or name, and favorites added by title."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, select

from db.engine import write_transaction
from db.models import Favorite, Movie, User
from jobs.errors import DataError
from jobs.titles import Movie as TitledMovie
from jobs.titles import TitleIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FavoritesResult:
    """Outcome of one ``favorites add``."""

    user_id: int
    user_created: bool
    added: list[TitledMovie]
    already_favorites: list[TitledMovie]


def load_title_index(connection: Connection) -> TitleIndex:
    """Build a title index over the whole catalogue."""
    rows = connection.execute(select(Movie.movie_id, Movie.title))
    return TitleIndex(TitledMovie(movie_id, title) for movie_id, title in rows)


def find_user(connection: Connection, user: str) -> int | None:
    """Return the user_id that ``user`` (an id or a name) names, or None.

    Raises:
        DataError: the name belongs to several users.
    """
    if user.strip().isdigit():
        user_id = connection.execute(
            select(User.user_id).where(User.user_id == int(user))
        ).scalar()
        return None if user_id is None else int(user_id)
    ids = list(
        connection.execute(select(User.user_id).where(User.name == user)).scalars()
    )
    if len(ids) > 1:
        raise DataError(
            f"user name {user!r} belongs to {len(ids)} users (user_id "
            f"{', '.join(map(str, ids))}); pass the user_id instead"
        )
    return int(ids[0]) if ids else None


def require_user(connection: Connection, user: str) -> int:
    """Return the user_id that ``user`` names.

    Raises:
        DataError: no such user, or the name is ambiguous.
    """
    user_id = find_user(connection, user)
    if user_id is None:
        raise DataError(f"user {user!r} not found; give a user_id or a user name")
    return user_id


def add_favorites(
    engine: Engine,
    user: str,
    titles: Sequence[str],
    movie_ids: Sequence[int] = (),
) -> FavoritesResult:
    """Add favorites for ``user``, creating the user when ``user`` is a new name.

    Every title must resolve to exactly one movie before anything is written;
    favorites the user already has are left as they are.

    Raises:
        DataError: a title or movie_id is unknown or ambiguous, a numeric
            user does not exist, or nothing was given.
    """
    if not titles and not movie_ids:
        raise DataError("no movies given; pass one or more titles or --movie-id")
    with write_transaction(engine) as connection:
        movies = _resolve_movies(connection, titles, movie_ids)
        user_id, created = _find_or_create_user(connection, user)
        existing = set(
            connection.execute(
                select(Favorite.movie_id).where(Favorite.user_id == user_id)
            ).scalars()
        )
        new = [movie for movie in movies if movie.movie_id not in existing]
        if new:
            connection.execute(
                insert(Favorite),
                [{"user_id": user_id, "movie_id": m.movie_id} for m in new],
            )
    old = [movie for movie in movies if movie.movie_id in existing]
    log.info(
        "user %d: %d favorites added, %d already there", user_id, len(new), len(old)
    )
    return FavoritesResult(user_id, created, new, old)


def _resolve_movies(
    connection: Connection, titles: Sequence[str], movie_ids: Sequence[int]
) -> list[TitledMovie]:
    index = load_title_index(connection)
    movies = [index.resolve(title) for title in titles]
    for movie_id in movie_ids:
        title = connection.execute(
            select(Movie.title).where(Movie.movie_id == movie_id)
        ).scalar()
        if title is None:
            raise DataError(f"movie_id {movie_id} not found in the movies table")
        movies.append(TitledMovie(movie_id, title))
    unique = {movie.movie_id: movie for movie in movies}
    return list(unique.values())


def _find_or_create_user(connection: Connection, user: str) -> tuple[int, bool]:
    user_id = find_user(connection, user)
    if user_id is not None:
        return user_id, False
    if user.strip().isdigit():
        raise DataError(
            f"user_id {user} not found; to create a user, give a name instead "
            "(a new user_id is assigned)"
        )
    if not user.strip():
        raise DataError("user name is empty; give a user_id or a name")
    new_id = connection.execute(
        insert(User).values(name=user).returning(User.user_id)
    ).scalar_one()
    log.info("created user %d named %r", new_id, user)
    return int(new_id), True


def count_favorites(connection: Connection, user_id: int) -> int:
    """Return how many favorites ``user_id`` has."""
    return int(
        connection.execute(
            select(func.count())
            .select_from(Favorite)
            .where(Favorite.user_id == user_id)
        ).scalar_one()
    )

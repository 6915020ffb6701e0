"""Rules the schema enforces against plain SQL from other systems."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from helpers import small_settings
from jobs.errors import NothingToDoError
from jobs.run import run_once


@pytest.fixture
def one_of_each(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (user_id, name) VALUES (1, 'a')"))
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (1, 'A (2000)')")
        )
    return engine


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO favorites (user_id, movie_id) VALUES (1, 999)",
        "INSERT INTO favorites (user_id, movie_id) VALUES (999, 1)",
        "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
        "VALUES (999, 1, 4, 0)",
        "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (1, 1, 7, 0)",
        "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (1, 1, 0, 0)",
    ],
    ids=[
        "favorite-unknown-movie",
        "favorite-unknown-user",
        "rating-unknown-user",
        "rating-above-scale",
        "rating-below-scale",
    ],
)
def test_invalid_row_rejected(one_of_each: Engine, statement: str) -> None:
    with pytest.raises(IntegrityError):
        with one_of_each.begin() as connection:
            connection.execute(text(statement))
    with one_of_each.connect() as connection:
        favorites = connection.execute(text("SELECT COUNT(*) FROM favorites"))
        assert favorites.scalar_one() == 0
        ratings = connection.execute(text("SELECT COUNT(*) FROM ratings"))
        assert ratings.scalar_one() == 0


def test_favorite_twice_rejected(one_of_each: Engine) -> None:
    statement = "INSERT INTO favorites (user_id, movie_id) VALUES (1, 1)"
    with one_of_each.begin() as connection:
        connection.execute(text(statement))
    with pytest.raises(IntegrityError):
        with one_of_each.begin() as connection:
            connection.execute(text(statement))


def test_users_without_ratings_nothing_to_do(one_of_each: Engine) -> None:
    with pytest.raises(NothingToDoError, match="no ratings and no favorites"):
        run_once(one_of_each, small_settings(str(one_of_each.url)))

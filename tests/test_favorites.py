"""favorites add: users by id or name, titles, and writers beside it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, text

from db.engine import make_engine
from helpers import seed_two_groups
from jobs.errors import DataError
from jobs.favorites import add_favorites


def favorites_of(engine: Engine, user_id: int) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT movie_id FROM favorites WHERE user_id = :id ORDER BY movie_id"
            ),
            {"id": user_id},
        )
        return [row[0] for row in rows]


def test_new_name_creates_user(engine: Engine) -> None:
    seed_two_groups(engine)
    result = add_favorites(engine, "zoe", ["Movie 3 (2000)", "movie 4"])
    assert result.user_created
    assert result.user_id == 33
    assert favorites_of(engine, 33) == [3, 4]


def test_existing_user_by_id(engine: Engine) -> None:
    seed_two_groups(engine)
    result = add_favorites(engine, "5", ["Movie 30 (2000)"], movie_ids=[31])
    assert not result.user_created
    assert favorites_of(engine, 5) == [30, 31]


def test_repeat_is_reported_not_duplicated(engine: Engine) -> None:
    seed_two_groups(engine)
    add_favorites(engine, "zoe", ["Movie 3 (2000)"])
    again = add_favorites(engine, "zoe", ["Movie 3 (2000)", "Movie 9 (2000)"])
    assert [movie.movie_id for movie in again.already_favorites] == [3]
    assert [movie.movie_id for movie in again.added] == [9]
    assert favorites_of(engine, again.user_id) == [3, 9]


def test_unknown_title_writes_nothing(engine: Engine) -> None:
    seed_two_groups(engine)
    with pytest.raises(DataError, match="'Movie 99 \\(2000\\)' not found"):
        add_favorites(engine, "zoe", ["Movie 3 (2000)", "Movie 99 (2000)"])
    with engine.connect() as connection:
        users = connection.execute(text("SELECT COUNT(*) FROM users")).scalar_one()
        favorites = connection.execute(text("SELECT COUNT(*) FROM favorites"))
        assert favorites.scalar_one() == 0
    assert users == 32


def test_unknown_numeric_user_rejected(engine: Engine) -> None:
    seed_two_groups(engine)
    with pytest.raises(DataError, match="user_id 999 not found"):
        add_favorites(engine, "999", ["Movie 3 (2000)"])


@pytest.mark.backends("sqlite")
def test_waits_for_other_writer(engine: Engine, database_url: str) -> None:
    seed_two_groups(engine)
    other = make_engine(database_url)
    holding = threading.Event()

    def hold_write_lock() -> None:
        with other.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with conn.begin():
                conn.execute(text("INSERT INTO users (name) VALUES ('other')"))
                holding.set()
                time.sleep(1.0)

    writer = threading.Thread(target=hold_write_lock)
    writer.start()
    holding.wait(timeout=10)
    # A deferred transaction would read, find the snapshot stale once the
    # other writer commits, and fail at once with "database is locked".
    result = add_favorites(engine, "zoe", ["Movie 3 (2000)"])
    writer.join()
    assert favorites_of(engine, result.user_id) == [3]
    other.dispose()

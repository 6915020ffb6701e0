"""Bulk writes into real databases: multi-row statements, stamps, deferred indexes."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

import db.bulk
from db.bulk import (
    ROWS_PER_STATEMENT,
    ChangeStamp,
    bulk_load,
    insert_rows,
    sqlite_trigger_dropped,
    upsert_rows,
)
from db.models import Rating

LONG_AGO = "2000-01-01 00:00:00"


def movie_columns(movie_ids: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "movie_id": movie_ids,
        "title": np.array([f"Movie {m} (2000)" for m in movie_ids], dtype=object),
        "genres": np.array(["Drama" if m % 2 else "" for m in movie_ids], dtype=object),
    }


def drop_trigger(connection: Connection) -> None:
    on_table = " ON ratings" if connection.dialect.name == "postgresql" else ""
    connection.execute(text(f"DROP TRIGGER ratings_changed_at{on_table}"))


def index_names(connection: Connection) -> set[str]:
    rows = connection.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    )
    return set(rows.scalars())


def test_insert_rows_across_statements(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 3.5 statements, so that each batch ends in a shorter one.
    monkeypatch.setattr(db.bulk, "BATCH_ROWS", ROWS_PER_STATEMENT * 7 // 2)
    movie_ids = np.arange(1, ROWS_PER_STATEMENT * 5 + 8, dtype=np.int64)
    with engine.begin() as connection:
        written = insert_rows(connection, "movies", movie_columns(movie_ids))
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT movie_id, title, genres FROM movies ORDER BY movie_id")
        ).all()
    expected = movie_columns(movie_ids)
    assert written == len(movie_ids)
    assert [row.movie_id for row in rows] == movie_ids.tolist()
    assert [row.title for row in rows] == expected["title"].tolist()
    assert [row.genres for row in rows] == expected["genres"].tolist()


@pytest.mark.backends("sqlite")
def test_rows_per_statement_obeys_limit(engine: Engine) -> None:
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # type: ignore[union-attr]
        assert db.bulk._rows_per_statement(connection, 4) == 2
        assert db.bulk._rows_per_statement(connection, 11) == 1
        movie_ids = np.arange(1, 8, dtype=np.int64)
        with connection.begin():
            insert_rows(connection, "movies", movie_columns(movie_ids))
        count = connection.execute(text("SELECT COUNT(*) FROM movies")).scalar_one()
    assert count == 7


def test_upsert_stamp_without_trigger(engine: Engine) -> None:
    stamp = ChangeStamp("changed_at", watched=("rating",))
    key = ["user_id", "movie_id"]
    update = ["rating", "rated_at"]
    with engine.begin() as connection:
        insert_rows(connection, "movies", movie_columns(np.array([1, 2, 3])))
        insert_rows(connection, "users", {"user_id": np.array([1])})
        first = {
            "user_id": np.array([1, 1, 1]),
            "movie_id": np.array([1, 2, 3]),
            "rating": np.array([4.0, 3.0, 2.0]),
            "rated_at": np.array([10, 20, 30]),
        }
        upsert_rows(connection, "ratings", first, key, update, stamp)
        connection.execute(text(f"UPDATE ratings SET changed_at = '{LONG_AGO}'"))

        # The stamp alone must move changed_at of movie 1 (new rating), and
        # leave movie 2 (new time only) and movie 3 (unchanged) as they were.
        drop_trigger(connection)
        second = {**first, "rating": np.array([5.0, 3.0, 2.0])}
        second["rated_at"] = np.array([11, 21, 30])
        upsert_rows(connection, "ratings", second, key, update, stamp)
        rows = connection.execute(
            text(
                "SELECT movie_id, rating, rated_at, changed_at = :long_ago AS old "
                "FROM ratings ORDER BY movie_id"
            ),
            {"long_ago": LONG_AGO},
        ).all()
        connection.rollback()
    assert [tuple(row[:3]) for row in rows] == [
        (1, 5.0, 11),
        (2, 3.0, 21),
        (3, 2.0, 30),
    ]
    assert [bool(row.old) for row in rows] == [False, True, True]


@pytest.mark.backends("sqlite")
def test_first_load_builds_index_after(engine: Engine) -> None:
    with bulk_load(engine, Rating.__table__) as connection:  # type: ignore[arg-type]
        during = index_names(connection)
        insert_rows(connection, "movies", movie_columns(np.array([1])))
        insert_rows(connection, "users", {"user_id": np.array([1])})
        insert_rows(
            connection,
            "ratings",
            {
                "user_id": np.array([1]),
                "movie_id": np.array([1]),
                "rating": np.array([4.0]),
                "rated_at": np.array([10]),
            },
        )
    with engine.connect() as connection:
        after = index_names(connection)
        integrity = connection.execute(text("PRAGMA integrity_check")).scalar_one()
    assert "ix_ratings_changed_at" not in during
    assert "ix_ratings_changed_at" in after
    assert "ix_favorites_created_at" in during
    assert integrity == "ok"


@pytest.mark.backends("sqlite")
def test_later_load_keeps_index(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO movies (movie_id, title) VALUES (1, 'A')"))
        connection.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 4, 0)"
            )
        )
    with bulk_load(engine, Rating.__table__) as connection:  # type: ignore[arg-type]
        during = index_names(connection)
    assert "ix_ratings_changed_at" in during


@pytest.mark.backends("sqlite")
def test_trigger_dropped_needs_transaction(engine: Engine) -> None:
    with engine.connect() as connection:
        with pytest.raises(ValueError, match="inside a transaction"):
            with sqlite_trigger_dropped(connection, "ratings_changed_at"):
                pass


@pytest.mark.backends("sqlite")
def test_trigger_dropped_and_restored(engine: Engine) -> None:
    query = text("SELECT sql FROM sqlite_master WHERE name = 'ratings_changed_at'")
    with engine.begin() as connection:
        before = connection.execute(query).scalar_one()
        with sqlite_trigger_dropped(connection, "ratings_changed_at"):
            during = connection.execute(query).scalar_one_or_none()
        after = connection.execute(query).scalar_one()
    assert during is None
    assert after == before


@pytest.mark.backends("sqlite")
def test_missing_trigger_stays_missing(engine: Engine) -> None:
    query = text("SELECT COUNT(*) FROM sqlite_master WHERE name = 'no_such_trigger'")
    with engine.begin() as connection:
        with sqlite_trigger_dropped(connection, "no_such_trigger"):
            pass
        count = connection.execute(query).scalar_one()
    assert count == 0

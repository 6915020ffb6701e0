"""Readers and writers beside a run: old run or new run, never a mix or nothing."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import Engine, text

from db.engine import make_engine
from helpers import small_settings
from jobs.run import run_once

N_USERS = 3_000
N_MOVIES = 60
LIST_LENGTH = 10


def seed_many_users(engine: Engine) -> None:
    """Insert N_USERS users who each rated 15 of N_MOVIES movies."""
    rng = np.random.default_rng(3)
    ratings = []
    for user in range(1, N_USERS + 1):
        movies = rng.choice(np.arange(1, N_MOVIES + 1), size=15, replace=False)
        ratings += [
            {"u": user, "m": int(m), "r": float(rng.integers(3, 6))} for m in movies
        ]
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (:id, :title)"),
            [{"id": m, "title": f"Movie {m} (1999)"} for m in range(1, N_MOVIES + 1)],
        )
        connection.execute(
            text("INSERT INTO users (user_id) VALUES (:id)"),
            [{"id": u} for u in range(1, N_USERS + 1)],
        )
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (:u, :m, :r, 0)"
            ),
            ratings,
        )


def poll_until(engine: Engine, stop: threading.Event) -> list[tuple[int, ...]]:
    """Read the view in a loop; record (run_id, rows) pairs per observation."""
    observations: list[tuple[int, ...]] = []
    with engine.connect() as connection:
        while not stop.is_set():
            with connection.begin():
                rows = connection.execute(
                    text(
                        "SELECT run_id, COUNT(*) FROM recommendations "
                        "GROUP BY run_id ORDER BY run_id"
                    )
                ).all()
            observations.append(tuple(value for row in rows for value in row))
    return observations


def test_reader_sees_whole_runs_only(database_url: str) -> None:
    engine = make_engine(database_url)
    seed_many_users(engine)
    settings = small_settings(database_url, n=LIST_LENGTH)
    first = run_once(engine, settings)

    stop = threading.Event()
    results: list[list[tuple[int, ...]]] = []
    reader_engine = make_engine(database_url)
    reader = threading.Thread(
        target=lambda: results.append(poll_until(reader_engine, stop))
    )
    reader.start()
    try:
        second = run_once(engine, settings)
        third = run_once(engine, settings)
    finally:
        stop.set()
        reader.join(timeout=60)
    observations = results[0]
    full = N_USERS * LIST_LENGTH
    allowed = {
        (first.run_id, full),
        (second.run_id, full),
        (third.run_id, full),
    }
    seen = Counter(observations)
    assert len(observations) > 10
    assert len(seen) >= 2
    assert set(seen) <= allowed, seen
    # The reader's last poll may have begun before the third run published,
    # so check the final state with a read that starts after it.
    with reader_engine.connect() as connection:
        final = connection.execute(
            text("SELECT run_id, COUNT(*) FROM recommendations GROUP BY run_id")
        ).all()
    assert [tuple(row) for row in final] == [(third.run_id, full)]
    reader_engine.dispose()
    engine.dispose()


def test_favorites_inserted_during_run_kept(database_url: str) -> None:
    engine = make_engine(database_url)
    seed_many_users(engine)
    settings = small_settings(database_url, n=LIST_LENGTH)
    writer_engine = make_engine(database_url)
    inserted: list[int] = []

    def insert_favorites() -> None:
        for user in range(1, 201):
            with writer_engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO favorites (user_id, movie_id) VALUES (:u, :m) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    {"u": user, "m": N_MOVIES},
                )
            inserted.append(user)

    writer = threading.Thread(target=insert_favorites)
    writer.start()
    during = run_once(engine, settings)
    writer.join(timeout=120)
    after = run_once(engine, settings)

    with engine.connect() as connection:
        stored = connection.execute(text("SELECT COUNT(*) FROM favorites")).scalar_one()
    assert len(inserted) == 200
    assert stored == 200
    assert 0 <= during.counts["n_favorites"] <= 200
    assert after.counts["n_favorites"] == 200
    writer_engine.dispose()
    engine.dispose()


@pytest.mark.backends("postgresql")
def test_reader_role_reads_only_results(database_url: str) -> None:
    engine = make_engine(database_url)
    seed_many_users(engine)
    run_once(engine, small_settings(database_url, n=LIST_LENGTH))
    with engine.begin() as connection:
        connection.execute(text("DROP ROLE IF EXISTS recs_reader_test"))
        for statement in READER_ROLE_SQL:
            connection.execute(text(statement))

    reader_url = engine.url.set(username="recs_reader_test", password="reader-secret")
    reader = make_engine(reader_url)
    with reader.connect() as connection:
        count = connection.execute(text("SELECT COUNT(*) FROM recommendations"))
        assert count.scalar_one() == N_USERS * LIST_LENGTH
        titles = connection.execute(text("SELECT COUNT(*) FROM movies"))
        assert titles.scalar_one() == N_MOVIES
    for forbidden in (
        "SELECT COUNT(*) FROM ratings",
        "SELECT COUNT(*) FROM recommendation_rows",
        "DELETE FROM recommendation_rows",
        "UPDATE published_run SET run_id = run_id",
        "INSERT INTO favorites (user_id, movie_id) VALUES (1, 1)",
    ):
        with reader.connect() as connection:
            with pytest.raises(Exception, match="permission denied"):
                connection.execute(text(forbidden))
    reader.dispose()
    with engine.begin() as connection:
        connection.execute(text("DROP OWNED BY recs_reader_test"))
        connection.execute(text("DROP ROLE recs_reader_test"))
    engine.dispose()


# The statements the README gives for a read-only role.
READER_ROLE_SQL = [
    "CREATE ROLE recs_reader_test LOGIN PASSWORD 'reader-secret'",
    "GRANT USAGE ON SCHEMA public TO recs_reader_test",
    "GRANT SELECT ON recommendations, similar_movies, movies TO recs_reader_test",
]

"""Database faults: a full disk, a read-only file, a server that goes away."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from db import migrate
from db.engine import make_engine
from helpers import published_rows, seed_two_groups, small_settings
from jobs.run import run_once
from jobs.synthetic import write_synthetic_movielens
from pg_server import PostgresServer, find_postgres_bin, start_postgres


def run_statuses(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status FROM model_runs ORDER BY run_id"))
        return [row[0] for row in rows]


@pytest.mark.backends("sqlite")
def test_full_disk_keeps_previous_lists(engine: Engine, database_url: str) -> None:
    seed_two_groups(engine)
    settings = small_settings(database_url)
    first = run_once(engine, settings)
    before = published_rows(engine, "recommendations")

    # SQLite reports SQLITE_FULL ("database or disk is full") when a file may
    # not grow past max_page_count, exactly as on a full disk.
    full = make_engine(database_url)
    with full.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()

    @event.listens_for(full, "connect")
    def _cap(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    full.dispose()
    with pytest.raises(OperationalError, match="full"):
        run_once(full, settings)
    full.dispose()

    assert published_rows(engine, "recommendations") == before
    second = run_once(engine, settings)
    assert second.run_id > first.run_id
    assert run_statuses(engine)[-1] == "succeeded"


@pytest.mark.backends("sqlite")
def test_read_only_file_changes_nothing(engine: Engine, database_url: str) -> None:
    seed_two_groups(engine)
    run_once(engine, small_settings(database_url))
    path = database_url.removeprefix("sqlite:///")
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(OperationalError, match="readonly"):
        run_once(read_only, small_settings(database_url))
    read_only.dispose()
    assert run_statuses(engine) == ["succeeded"]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which the test may stop."""
    if find_postgres_bin() is None:
        if os.environ.get("MOVIE_RECS_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL server binaries not found")
        pytest.skip("PostgreSQL server binaries not found")
    server = start_postgres()
    yield server
    server.stop()


def test_server_stopped_mid_run(own_postgres: PostgresServer, tmp_path: Path) -> None:
    url = own_postgres.create_database("faults")
    engine = make_engine(url)
    migrate.upgrade(engine)
    data = write_synthetic_movielens(tmp_path / "data", n_ratings=300_000)
    env = {**os.environ, "DATABASE_URL": url}
    jobs = [sys.executable, "-m", "jobs"]
    subprocess.run([*jobs, "-q", "ingest", str(data)], env=env, check=True)
    subprocess.run([*jobs, "-q", "run-once"], env=env, check=True)
    before = published_rows(engine, "recommendations")
    engine.dispose()

    # Stop the server as soon as the run has read its snapshot.
    child = subprocess.Popen(
        [*jobs, "run-once"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    for line in child.stderr:
        if "stage read done" in line:
            own_postgres.pause()
            break
    output = child.stderr.read()
    assert child.wait(timeout=120) == 6
    assert "database error" in output
    assert "Traceback" not in output

    own_postgres.resume()
    engine = make_engine(url)
    assert published_rows(engine, "recommendations") == before
    result = subprocess.run([*jobs, "-q", "run-once"], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert run_statuses(engine) == ["succeeded", "abandoned", "succeeded"]
    engine.dispose()


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("(999999, 1)", "favorites.user_id is not in users"),
        ("(1, 777)", "favorites.movie_id is not in movies"),
    ],
)
def test_shell_orphan_favorite_rejected(
    engine: Engine, database_url: str, values: str, message: str
) -> None:
    seed_two_groups(engine)
    # Python's sqlite3 module, like the sqlite3 shell, leaves foreign keys off.
    path = database_url.removeprefix("sqlite:///")
    shell = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match=message):
        shell.execute(f"INSERT INTO favorites (user_id, movie_id) VALUES {values}")
    shell.close()
    with engine.connect() as connection:
        count = connection.execute(text("SELECT COUNT(*) FROM favorites"))
        assert count.scalar_one() == 0


@pytest.mark.backends("sqlite")
def test_shell_orphan_rating_skipped(
    engine: Engine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_groups(engine)
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as shell:
        shell.execute(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
            "VALUES (999999, 1, 5, 0), (1, 777, 5, 0)"
        )
    summary = run_once(engine, small_settings(database_url))
    assert summary.counts["n_interactions"] > 0
    assert "skipped 2 ratings rows" in caplog.text
    movies = {row[2] for row in published_rows(engine, "recommendations")}
    assert 777 not in movies

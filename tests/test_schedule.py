"""jobs schedule: job outcomes, retries after database errors, signals, refreshes."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

import db.engine
from db import migrate
from db.engine import make_engine
from helpers import published_rows, seed_two_groups, small_settings
from jobs.cli import main
from jobs.config import ScheduleSettings, Settings
from jobs.control import RunControl, RunStopped
from jobs.cron import cron_trigger
from jobs.lock import run_lock
from jobs.retry import call_with_retries, is_transient
from jobs.run import run_once
from jobs.schedule import JobOutcome, Scheduler
from pg_server import PostgresServer, find_postgres_bin, start_postgres
from processes import JobsProcess

# Far from any time a test runs: 03:00 on the first of January.
FAR_CRON = "0 3 1 1 *"


def far_fire_time() -> str:
    """Return the next fire time of FAR_CRON in UTC, as the scheduler logs it."""
    utc = ZoneInfo("UTC")
    fire = cron_trigger(FAR_CRON, utc).get_next_fire_time(None, datetime.now(utc))
    assert fire is not None
    return fire.isoformat(sep=" ", timespec="seconds")


def scheduled_settings(url: str, **schedule: object) -> Settings:
    """Small model settings with a [schedule] that never retries unless asked."""
    values: dict[str, object] = {
        "cron": FAR_CRON,
        "timezone": "UTC",
        "retries": 0,
        "retry_backoff_seconds": 0.0,
        **schedule,
    }
    return dataclasses.replace(
        small_settings(url),
        schedule=ScheduleSettings(**values),  # type: ignore[arg-type]
    )


@contextmanager
def running(
    engine: Engine, settings: Settings, control: RunControl | None = None
) -> Iterator[Scheduler]:
    """A started scheduler whose own triggers do not fire during the test."""
    scheduler = Scheduler(engine, settings, control)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def statuses(engine: Engine) -> list[tuple[int, str, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT run_id, status, error FROM model_runs ORDER BY run_id")
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def published_run(engine: Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(text("SELECT run_id FROM published_run")).scalar()


def seed_divergent(engine: Engine) -> None:
    """Three users and two movies: with 64 factors and no regularization the
    normal equations are singular, and with random_state 1 the fit yields NaN."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO movies (movie_id, title) VALUES (1, 'A'), (2, 'B')")
        )
        connection.execute(text("INSERT INTO users (user_id) VALUES (1), (2), (3)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 5, 0), (2, 2, 5, 0), (3, 1, 5, 0), (3, 2, 5, 0)"
            )
        )


def test_full_run_logs_outcome(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_groups(engine)
    settings = scheduled_settings(str(engine.url))
    with caplog.at_level(logging.INFO), running(engine, settings) as scheduler:
        outcome = scheduler.run_full()
        scheduled = scheduler.scheduler.get_job("full-run").next_run_time
    assert outcome.status == "succeeded"
    assert outcome.run_id == 1
    assert outcome.seconds > 0
    assert published_run(engine) == 1
    assert "full run starting" in caplog.text
    assert "full run 1 succeeded in" in caplog.text
    assert f"next full run at {scheduled.isoformat(sep=' ')}" in caplog.text
    assert scheduled.strftime("%m-%d %H:%M %Z") == "01-01 03:00 UTC"


def test_training_error_keeps_scheduler_going(engine: Engine) -> None:
    seed_divergent(engine)
    good = scheduled_settings(str(engine.url))
    diverging = dataclasses.replace(
        good,
        model=dataclasses.replace(
            good.model, factors=64, regularization=0.0, iterations=15, random_state=1
        ),
    )
    with running(engine, good) as scheduler:
        first = scheduler.run_full()
    with running(engine, diverging) as scheduler:
        failed = scheduler.run_full()
        still_scheduled = scheduler.scheduler.get_job("full-run") is not None
        still_running = scheduler.scheduler.running
    with running(engine, good) as scheduler:
        third = scheduler.run_full()
    runs = statuses(engine)
    assert first == JobOutcome("succeeded", 1, first.seconds)
    assert failed.status == "failed"
    assert failed.run_id == 2
    assert "ModelError: training diverged" in failed.detail
    assert still_scheduled
    assert still_running
    assert runs[1][1] == "failed"
    assert "diverged" in (runs[1][2] or "")
    assert third.status == "succeeded"
    assert third.run_id == 3
    assert published_run(engine) == 3


def test_bad_data_run_recorded_failed(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO movies (movie_id, title) VALUES (1, 'A')"))
        connection.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (1, 1, 1.0, 0)"
            )
        )
    with running(engine, scheduled_settings(str(engine.url))) as scheduler:
        outcome = scheduler.run_full()
    assert outcome.status == "failed"
    assert outcome.run_id == 1
    assert "NothingToDoError: no positive interactions" in outcome.detail
    assert statuses(engine)[0][1] == "failed"
    assert published_run(engine) is None


def test_locked_run_is_skipped(engine: Engine) -> None:
    seed_two_groups(engine)
    with running(engine, scheduled_settings(str(engine.url))) as scheduler:
        with run_lock(engine):
            outcome = scheduler.run_full()
    assert outcome.status == "skipped"
    assert "another run holds the run lock" in outcome.detail
    assert statuses(engine) == []


def test_missed_full_run_is_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_groups(engine)
    settings = scheduled_settings(str(engine.url), misfire_grace_seconds=1)
    late = datetime.now(ZoneInfo("UTC")) - timedelta(hours=1)
    with caplog.at_level(logging.WARNING), running(engine, settings) as scheduler:
        # Due an hour ago, as after a suspend: APScheduler reports it missed.
        scheduler.scheduler.modify_job("full-run", next_run_time=late)
        deadline = time.monotonic() + 30
        while "was skipped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    due = late.isoformat(sep=" ", timespec="seconds")
    assert (
        f"full run due at {due} was skipped: it could not start within its "
        "misfire grace time"
    ) in caplog.text
    assert statuses(engine) == []


def test_stopping_skips_queued_jobs(engine: Engine) -> None:
    seed_two_groups(engine)
    control = RunControl()
    with running(engine, scheduled_settings(str(engine.url)), control) as scheduler:
        control.request_stop("test stop")
        full = scheduler.run_full()
        refreshed = scheduler.run_refresh()
    assert full.status == "skipped"
    assert refreshed.status == "skipped"
    assert statuses(engine) == []


@pytest.mark.backends("sqlite")
def test_locked_database_is_retried(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_engine = make_engine(database_url)
    seed_two_groups(seed_engine)
    seed_engine.dispose()
    # SQLite waits this long for a lock before "database is locked".
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    engine = make_engine(database_url)

    # Another writer holds the write lock for about a second.
    blocker = sqlite3.connect(
        database_url.removeprefix("sqlite:///"),
        isolation_level=None,
        check_same_thread=False,
    )
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, blocker.execute, ["ROLLBACK"])
    release.start()
    settings = scheduled_settings(database_url, retries=8, retry_backoff_seconds=0.1)
    try:
        with caplog.at_level(logging.WARNING), running(engine, settings) as scheduler:
            outcome = scheduler.run_full()
    finally:
        release.join()
        blocker.close()
    assert outcome.status == "succeeded"
    assert "full run failed with a transient database error (attempt 1 of 9)" in (
        caplog.text
    )
    assert "database is locked" in caplog.text
    assert published_run(engine) == outcome.run_id
    engine.dispose()


@pytest.mark.backends("sqlite")
def test_locked_database_fails_without_retries(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_engine = make_engine(database_url)
    seed_two_groups(seed_engine)
    seed_engine.dispose()
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    engine = make_engine(database_url)
    blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    blocker.isolation_level = None
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with running(engine, scheduled_settings(database_url)) as scheduler:
            outcome = scheduler.run_full()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert outcome.status == "failed"
    assert "database is locked" in outcome.detail
    assert published_run(engine) is None
    engine.dispose()


def test_refused_connection_retried_then_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on the discard port, so every connection is refused.
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    engine = make_engine(url)
    settings = scheduled_settings(url, retries=2, retry_backoff_seconds=0.05)
    with caplog.at_level(logging.WARNING), running(engine, settings) as scheduler:
        outcome = scheduler.run_full()
    retries = [r for r in caplog.records if "transient database error" in r.message]
    assert outcome.status == "failed"
    assert outcome.run_id is None
    assert "OperationalError" in outcome.detail
    assert len(retries) == 2
    assert "(attempt 2 of 3)" in retries[1].message
    engine.dispose()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which the test may stop."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not found")
    server = start_postgres()
    yield server
    server.stop()


def test_server_back_after_retries(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_postgres.create_database("retries")
    engine = make_engine(url)
    migrate.upgrade(engine)
    seed_two_groups(engine)
    first = run_once(engine, small_settings(url))

    own_postgres.pause()
    restart = threading.Timer(1.0, own_postgres.resume)
    restart.start()
    settings = scheduled_settings(url, retries=8, retry_backoff_seconds=0.25)
    try:
        with caplog.at_level(logging.WARNING), running(engine, settings) as scheduler:
            outcome = scheduler.run_full()
    finally:
        restart.join()
    assert outcome.status == "succeeded"
    assert outcome.run_id is not None
    assert outcome.run_id > first.run_id
    assert "transient database error" in caplog.text
    assert published_run(engine) == outcome.run_id
    engine.dispose()


def test_schedule_on_old_schema_exits_6(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--database-url", empty_url, "-q", "schedule"])
    err = capsys.readouterr().err
    assert status == 6
    assert "python -m jobs db upgrade" in err


def test_refresh_waits_for_first_run(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seed_two_groups(engine)
    with (
        caplog.at_level(logging.INFO),
        running(engine, scheduled_settings(str(engine.url))) as scheduler,
    ):
        outcomes = [scheduler.run_refresh(), scheduler.run_refresh()]
    waiting = [r for r in caplog.records if "refresh skipped until" in r.message]
    assert [outcome.status for outcome in outcomes] == ["skipped", "skipped"]
    assert len(waiting) == 1


def test_refresh_job_refreshes(engine: Engine) -> None:
    seed_two_groups(engine)
    run_once(engine, small_settings(str(engine.url)))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (user_id) VALUES (100)"))
    with running(engine, scheduled_settings(str(engine.url))) as scheduler:
        outcome = scheduler.run_refresh()
    rows = [row for row in published_rows(engine, "recommendations") if row[0] == 100]
    assert outcome.status == "succeeded"
    assert outcome.run_id == 1
    assert len(rows) == 5


def test_transient_errors_classified() -> None:
    def wrapped(driver_error: Exception) -> OperationalError:
        return OperationalError("SELECT 1", {}, driver_error)

    locked = wrapped(sqlite3.OperationalError("database is locked"))
    refused = wrapped(psycopg.OperationalError("connection refused"))
    try:
        raise RuntimeError("run failed") from locked
    except RuntimeError as chained:
        caused = chained
    assert is_transient(locked)
    assert is_transient(refused)
    assert is_transient(psycopg.OperationalError("server closed the connection"))
    assert is_transient(caused)
    assert not is_transient(wrapped(sqlite3.OperationalError("no such table: x")))
    assert not is_transient(ValueError("database is locked"))


def test_stop_ends_retry_wait() -> None:
    stop = threading.Event()

    def always_locked() -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("locked"))

    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RunStopped, match="while waiting to retry test job"):
        call_with_retries(
            always_locked,
            name="test job",
            retries=3,
            backoff_seconds=60.0,
            stop_event=stop,
        )
    assert time.monotonic() - started < 30


# --- The scheduler as a process --------------------------------------------


def write_config(folder: Path, **schedule: object) -> Path:
    """Write a config.toml with small model settings and the given [schedule]."""
    lines = [
        "[model]",
        "factors = 4",
        "regularization = 0.1",
        "iterations = 10",
        "[output]",
        "n = 5",
        "similar_n = 4",
        "similar_min_support = 2",
        "[schedule]",
        f'cron = "{FAR_CRON}"',
        'timezone = "UTC"',
    ]
    for key, value in schedule.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_scheduler(
    database_url: str, folder: Path, *extra: str, **schedule: object
) -> JobsProcess:
    config = write_config(folder, **schedule)
    args = ["--config", str(config), "--database-url", database_url, "schedule"]
    return JobsProcess([*args, *extra], cwd=folder)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_idle_scheduler(
    database_url: str, tmp_path: Path, number: signal.Signals
) -> None:
    child = start_scheduler(database_url, tmp_path)
    try:
        started = child.wait_for("scheduler started")
        child.send(number)
        status = child.wait(timeout=60)
    finally:
        child.kill()
    assert status == 0
    assert f"next at {far_fire_time()}" in started
    assert f"received {number.name}: stopping" in child.output
    assert "scheduler stopped" in child.output
    assert "Traceback" not in child.output


def test_scheduled_refresh_publishes_new_user(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    seed_two_groups(engine)
    # Stamp the seeded ratings as old, so that only the new user counts as changed.
    with engine.begin() as connection:
        connection.execute(text("UPDATE ratings SET changed_at = '2000-01-01'"))
    run_once(engine, small_settings(database_url))
    child = start_scheduler(database_url, tmp_path, refresh_minutes=0.02)
    try:
        child.wait_for("scheduler started")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO users (user_id) VALUES (100)"))
            connection.execute(
                text(
                    "INSERT INTO favorites (user_id, movie_id) "
                    "VALUES (100, 1), (100, 2), (100, 3)"
                )
            )
        child.wait_for("refreshed 1 users (1 without a list)")
        child.send(signal.SIGTERM)
        status = child.wait(timeout=60)
    finally:
        child.kill()
    rows = [row for row in published_rows(engine, "recommendations") if row[0] == 100]
    assert status == 0
    assert [row[1] for row in rows] == [1, 2, 3, 4, 5]
    assert {row[4] for row in rows} == {"als"}
    assert not {row[2] for row in rows} & {1, 2, 3}


def test_scheduler_survives_failed_run(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    # An empty database: the full run started by --run-now fails.
    child = start_scheduler(database_url, tmp_path, "--run-now")
    try:
        failed = child.wait_for("full run - failed after")
        child.wait_for(f"next full run at {far_fire_time()}")
        time.sleep(0.5)
        alive = child.process.poll() is None
        child.send(signal.SIGTERM)
        status = child.wait(timeout=60)
    finally:
        child.kill()
    assert "the database has no ratings and no favorites" in failed
    assert alive
    assert status == 0

"""Runs killed or stopped mid-way, for real: what readers see and what comes next.

Each backend gets one database with 500,000 synthetic ratings, so that the
stages of a run take a second or so and a signal sent after one stage's log
line lands inside the next stage.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from conftest import new_migrated_database
from db.engine import make_engine
from jobs.config import Settings, load_settings
from jobs.errors import LockedError
from jobs.ingest import ingest
from jobs.run import RunSummary, run_once
from jobs.synthetic import write_synthetic_movielens
from processes import JobsProcess

N_RATINGS = 500_000

# Long lists make the writing stages take about a second each.
CONFIG = """
[output]
n = 100
similar_n = 100

[schedule]
cron = "0 3 1 1 *"
timezone = "UTC"
"""


@dataclass(frozen=True)
class BigDatabase:
    """A migrated database with the synthetic ratings and one published run."""

    url: str
    folder: Path
    config: Path

    def settings(self) -> Settings:
        return load_settings(self.config, self.url, environ={})

    def start(self, *args: str) -> JobsProcess:
        """Start ``python -m jobs ARGS`` on this database."""
        base = ["--config", str(self.config), "--database-url", self.url]
        return JobsProcess([*base, *args], cwd=self.folder)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_movielens(folder, n_ratings=N_RATINGS)


@pytest.fixture(scope="module")
def big_database(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    synthetic_dir: Path,
) -> Iterator[BigDatabase]:
    folder = tmp_path_factory.mktemp(f"recovery-{backend}")
    config = folder / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    big = BigDatabase(new_migrated_database(backend, request, folder), folder, config)
    engine = make_engine(big.url)
    ingest(engine, synthetic_dir)
    run_once(engine, big.settings())
    engine.dispose()
    yield big


@pytest.fixture
def engine(big_database: BigDatabase) -> Iterator[Engine]:
    engine = make_engine(big_database.url)
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class ReaderView:
    """A reader's view of ``recommendations``: one run_id and its row count."""

    run_id: int
    rows: int


def reader_view(engine: Engine) -> ReaderView:
    with engine.connect() as connection:
        groups = connection.execute(
            text("SELECT run_id, COUNT(*) FROM recommendations GROUP BY run_id")
        ).all()
    assert len(groups) == 1, groups
    return ReaderView(int(groups[0][0]), int(groups[0][1]))


def run_record(engine: Engine, run_id: int) -> tuple[str, str | None, int | None]:
    """Return (status, error, n_recommendations) of a run."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT status, error, n_recommendations FROM model_runs "
                "WHERE run_id = :id"
            ),
            {"id": run_id},
        ).one()
    return row[0], row[1], row[2]


def leftovers(engine: Engine, run_id: int) -> dict[str, int]:
    """Count the rows of ``run_id`` in each run-keyed table."""
    counts = {}
    with engine.connect() as connection:
        for table in ("recommendation_rows", "similar_movie_rows", "run_models"):
            counts[table] = connection.execute(
                text(f"SELECT COUNT(*) FROM {table} WHERE run_id = :id"),
                {"id": run_id},
            ).scalar_one()
    return counts


def latest_run_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text("SELECT MAX(run_id) FROM model_runs")).scalar_one()
        )


def assert_complete(engine: Engine) -> ReaderView:
    """Check that readers see exactly one run, with every row it recorded."""
    view = reader_view(engine)
    status, _, n_recommendations = run_record(engine, view.run_id)
    assert status == "succeeded"
    assert view.rows == n_recommendations
    return view


def next_run(engine: Engine, settings: Settings) -> RunSummary:
    """Run once; wait while PostgreSQL still holds a killed process's lock."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return run_once(engine, settings)
        except LockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def kill_after(big: BigDatabase, line: str) -> JobsProcess:
    """Start run-once and SIGKILL it as soon as it logs ``line``."""
    child = big.start("run-once")
    try:
        child.wait_for(line)
        child.send(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    return child


@pytest.mark.parametrize(
    ("stage", "after"),
    [
        ("fit", "stage build done"),
        ("recommend", "stage save_model done"),
        ("similar", "stage recommend done"),
    ],
)
def test_killed_run_keeps_previous_lists(
    big_database: BigDatabase, engine: Engine, stage: str, after: str
) -> None:
    before = assert_complete(engine)
    child = kill_after(big_database, after)
    killed = latest_run_id(engine)

    # The process died inside `stage`, and readers still see the previous run.
    assert f"stage {stage} done" not in child.output
    assert killed > before.run_id
    assert run_record(engine, killed)[0] == "running"
    assert reader_view(engine) == before
    if stage == "similar":
        # Its recommendations were committed, but under its own run_id.
        assert leftovers(engine, killed)["recommendation_rows"] > 0

    summary = next_run(engine, big_database.settings())
    status, error, _ = run_record(engine, killed)
    assert status == "abandoned"
    assert error is not None
    assert "process ended before the run finished" in error
    assert leftovers(engine, killed) == {
        "recommendation_rows": 0,
        "similar_movie_rows": 0,
        "run_models": 0,
    }
    assert assert_complete(engine).run_id == summary.run_id


def test_killed_around_publish(big_database: BigDatabase, engine: Engine) -> None:
    before = assert_complete(engine)
    kill_after(big_database, "stage similar done")
    killed = latest_run_id(engine)

    # Killed just before or just after the publishing commit: either way,
    # readers see one complete run.
    view = assert_complete(engine)
    assert view.run_id in (before.run_id, killed)
    if view.run_id == before.run_id:
        assert run_record(engine, killed)[0] == "running"
    summary = next_run(engine, big_database.settings())
    assert run_record(engine, killed)[0] in ("succeeded", "abandoned")
    assert assert_complete(engine).run_id == summary.run_id


@pytest.mark.parametrize(
    ("after", "delay", "stopped_before"),
    [
        ("stage build done", 0.0, "stage fit done"),
        # Half a second into the recommend stage, which takes one to two.
        ("stage save_model done", 0.5, "stage similar done"),
    ],
    ids=["during-fit", "during-recommend"],
)
def test_sigterm_abandons_scheduled_run(
    big_database: BigDatabase,
    engine: Engine,
    after: str,
    delay: float,
    stopped_before: str,
) -> None:
    before = assert_complete(engine)
    child = big_database.start("schedule", "--run-now")
    try:
        child.wait_for(after)
        time.sleep(delay)
        child.send(signal.SIGTERM)
        status = child.wait(timeout=120)
    finally:
        child.kill()
    stopped = latest_run_id(engine)
    run_status, error, _ = run_record(engine, stopped)

    # The stage in progress may end, but the next one never starts.
    assert status == 0
    assert stopped_before not in child.output
    assert f"full run {stopped} abandoned" in child.output
    assert run_status == "abandoned"
    assert error is not None
    assert "received SIGTERM" in error
    assert leftovers(engine, stopped) == {
        "recommendation_rows": 0,
        "similar_movie_rows": 0,
        "run_models": 0,
    }
    assert reader_view(engine) == before

"""Time ``jobs refresh`` and how soon a new user's list is readable, per backend.

For each backend it creates a fresh database and runs ``python -m jobs db
upgrade``, ``ingest`` and ``run-once`` as child processes. Then it measures:

1. the first ``refresh`` after that run. It recomputes every user whose
   ratings arrived less than ``CHANGE_OVERLAP_SECONDS`` before the run read
   its snapshot, which after a fresh ingest is every user;
2. ``refresh`` as a process for 1, 100 and 1,000 new users with five
   favorites each, inserted with plain SQL (median of ``--repeats``). Before
   these, every rating is stamped as written in 2000 (on PostgreSQL followed
   by VACUUM ANALYZE), and before each measurement every earlier favorite,
   so that only the new users count as changed;
3. the time from inserting one new user's five favorites with SQL to their
   list being readable in ``recommendations``: with ``refresh`` started by
   hand right after the insert, and with ``jobs schedule`` running with
   ``refresh_minutes = --refresh-minutes``, inserting at random moments.

    python bench/refresh.py --data /path/to/ml-1m
    python bench/refresh.py --data DIR --backend sqlite --samples 10

PostgreSQL: ``--postgres-url`` names a role that may create databases;
without it a throwaway server is started from the local PostgreSQL binaries.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline import database_url, start_throwaway_postgres
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

FAVORITES_PER_USER = 5
# New users pick their favorites among this many of the most rated movies.
POPULAR_POOL = 200
OLD_STAMP = "2000-01-01 00:00:00"
POLL_SECONDS = 0.02
REFRESHED = re.compile(r"refreshed (\d+) users .* in ([\d.]+) s")


@dataclass
class RefreshCost:
    """One ``jobs refresh`` process: wall seconds, users, in-process seconds."""

    wall: float
    users: int
    inside: float


def jobs(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run ``python -m jobs -q ARGS``; return wall seconds and stdout."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "-q", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"jobs {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return seconds, result.stdout


def refresh_process(env: dict[str, str], cwd: Path) -> RefreshCost:
    """Run ``jobs refresh`` as a process and parse what it reports."""
    wall, stdout = jobs(["refresh"], env, cwd)
    match = REFRESHED.search(stdout)
    if match is None:
        return RefreshCost(wall, 0, 0.0)
    return RefreshCost(wall, int(match.group(1)), float(match.group(2)))


def popular_movies(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT movie_id FROM ratings GROUP BY movie_id "
                f"ORDER BY COUNT(*) DESC LIMIT {POPULAR_POOL}"
            )
        )
        return [int(row[0]) for row in rows]


def add_users(
    engine: Engine, count: int, pool: Sequence[int], rng: random.Random
) -> list[int]:
    """Insert ``count`` users with five favorites each; return their user_ids."""
    with engine.begin() as connection:
        first = connection.execute(
            text("SELECT COALESCE(MAX(user_id), 0) + 1 FROM users")
        ).scalar_one()
        user_ids = list(range(first, first + count))
        connection.execute(
            text("INSERT INTO users (user_id, name) VALUES (:id, :name)"),
            [{"id": user_id, "name": f"bench-{user_id}"} for user_id in user_ids],
        )
        connection.execute(
            text("INSERT INTO favorites (user_id, movie_id) VALUES (:u, :m)"),
            [
                {"u": user_id, "m": movie_id}
                for user_id in user_ids
                for movie_id in rng.sample(list(pool), FAVORITES_PER_USER)
            ],
        )
    return user_ids


def age_ratings(engine: Engine) -> None:
    """Stamp every rating as written in 2000, then let PostgreSQL clean up.

    One UPDATE of a million rows leaves as many dead row versions, which
    would slow the next refreshes until autovacuum runs.
    """
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE ratings SET changed_at = '{OLD_STAMP}'"))
    if engine.dialect.name == "postgresql":
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            connection.execute(text("VACUUM ANALYZE ratings"))


def age_favorites(engine: Engine) -> None:
    """Stamp every favorite as written in 2000, so earlier users count as old."""
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE favorites SET created_at = '{OLD_STAMP}'"))


def wait_until_readable(engine: Engine, user_id: int, timeout: float) -> float:
    """Poll until ``user_id`` has a published list; return the monotonic time."""
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            found = connection.execute(
                text("SELECT COUNT(*) FROM recommendations WHERE user_id = :u"),
                {"u": user_id},
            ).scalar_one()
            connection.rollback()
            if found:
                return time.monotonic()
            time.sleep(POLL_SECONDS)
    raise TimeoutError(f"user {user_id} got no list within {timeout:.0f} s")


def by_hand_latency(
    engine: Engine,
    env: dict[str, str],
    cwd: Path,
    pool: Sequence[int],
    rng: random.Random,
) -> float:
    """Insert one user, run ``jobs refresh``, and time until the list is readable."""
    age_favorites(engine)
    started = time.monotonic()
    [user_id] = add_users(engine, 1, pool, rng)
    jobs(["refresh"], env, cwd)
    return wait_until_readable(engine, user_id, timeout=60) - started


def scheduler_latencies(
    engine: Engine,
    env: dict[str, str],
    cwd: Path,
    pool: Sequence[int],
    rng: random.Random,
    refresh_minutes: float,
    samples: int,
) -> list[float]:
    """Time insert-to-readable with ``jobs schedule`` refreshing in the background."""
    config = cwd / "schedule.toml"
    config.write_text(
        f'[schedule]\ncron = "0 3 1 1 *"\nrefresh_minutes = {refresh_minutes}\n',
        encoding="utf-8",
    )
    interval = refresh_minutes * 60
    child = subprocess.Popen(
        [sys.executable, "-m", "jobs", "--config", str(config), "schedule"],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    try:
        for line in child.stderr:
            if "scheduler started" in line:
                break
        # Let the first refresh absorb the earlier measurements' users.
        time.sleep(interval + 5)
        latencies = []
        for _ in range(samples):
            time.sleep(rng.uniform(0, interval))
            started = time.monotonic()
            [user_id] = add_users(engine, 1, pool, rng)
            readable = wait_until_readable(engine, user_id, timeout=interval + 60)
            latencies.append(readable - started)
        return latencies
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=120)


def bench_backend(
    backend: str, args: argparse.Namespace, postgres_url: str | None
) -> tuple[list[str], list[str]]:
    """Measure one backend; return markdown rows of the cost and latency tables."""
    rng = random.Random(7)
    costs, latencies = [], []
    with tempfile.TemporaryDirectory(prefix="movie-recs-refresh-") as folder:
        scratch = Path(folder)
        url = database_url(backend, scratch, postgres_url)
        env = {**os.environ, "DATABASE_URL": url}
        jobs(["db", "upgrade"], env, scratch)
        jobs(["ingest", str(args.data)], env, scratch)
        jobs(["run-once"], env, scratch)
        engine = create_engine(url, poolclass=NullPool)
        pool = popular_movies(engine)

        first = refresh_process(env, scratch)
        costs.append(_cost_row(backend, "first after ingest and run-once", [first]))
        age_ratings(engine)
        for count in (1, 100, 1_000):
            measured = []
            for _ in range(args.repeats):
                age_favorites(engine)
                add_users(engine, count, pool, rng)
                measured.append(refresh_process(env, scratch))
            label = f"{count:,} new user" + ("s" if count > 1 else "")
            costs.append(_cost_row(backend, label, measured))

        by_hand = [
            by_hand_latency(engine, env, scratch, pool, rng)
            for _ in range(args.repeats)
        ]
        latencies.append(_latency_row(backend, "refresh by hand", by_hand))
        scheduled = scheduler_latencies(
            engine, env, scratch, pool, rng, args.refresh_minutes, args.samples
        )
        method = f"schedule, refresh_minutes = {args.refresh_minutes:g}"
        latencies.append(_latency_row(backend, method, scheduled))
        engine.dispose()
    return costs, latencies


def _cost_row(backend: str, step: str, costs: list[RefreshCost]) -> str:
    users = "/".join(str(n) for n in sorted({cost.users for cost in costs}))
    wall = statistics.median(cost.wall for cost in costs)
    inside = statistics.median(cost.inside for cost in costs)
    return (
        f"| {backend} | {step} | {users} | {len(costs)} | {wall:.2f} | {inside:.2f} |"
    )


def _latency_row(backend: str, method: str, seconds: list[float]) -> str:
    low, middle, high = min(seconds), statistics.median(seconds), max(seconds)
    spread = f"{low:.2f} | {middle:.2f} | {high:.2f}"
    return f"| {backend} | {method} | {len(seconds)} | {spread} |"


def main() -> None:
    """Parse arguments, run the measurements and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="MovieLens folder or zip to ingest"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=["sqlite", "postgresql"],
        help="backend to measure (repeatable; default: both)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repetitions of each refresh and by-hand measurement (default: 3)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=6,
        help="new users timed through the scheduler (default: 6)",
    )
    parser.add_argument(
        "--refresh-minutes",
        type=float,
        default=0.5,
        help="[schedule] refresh_minutes of the timed scheduler (default: 0.5)",
    )
    parser.add_argument(
        "--postgres-url",
        help="URL of a PostgreSQL role that may create databases "
        "(default: start a throwaway server)",
    )
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]

    server = None
    postgres_url = args.postgres_url
    if "postgresql" in backends and postgres_url is None:
        postgres_url, server = start_throwaway_postgres()
    try:
        cost_rows, latency_rows = [], []
        for backend in backends:
            costs, latencies = bench_backend(backend, args, postgres_url)
            cost_rows += costs
            latency_rows += latencies
        print(
            "| backend | refresh | users refreshed | runs | wall s (median) | "
            "refresh's own s (median) |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(cost_rows))
        print()
        print("| backend | insert to readable | samples | min s | median s | max s |")
        print("|---|---|---|---|---|---|")
        print("\n".join(latency_rows))
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

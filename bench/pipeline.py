"""Time ``jobs ingest`` and ``jobs run-once`` as whole processes, per backend.

For each backend it creates a fresh database, runs ``python -m jobs db
upgrade``, ``ingest`` and ``run-once`` (``--runs`` times) as child
processes, and prints wall time and peak resident memory of each process
and the seconds per stage that the run recorded in ``model_runs.timings``.

    python bench/pipeline.py --data /path/to/ml-1m
    python bench/pipeline.py --data DIR --backend sqlite --runs 3

PostgreSQL: ``--postgres-url`` names a role that may create databases;
without it a throwaway server is started from the local PostgreSQL binaries
(the test suite's ``tests/pg_server.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent


@dataclass
class ProcessCost:
    """Wall seconds and peak resident memory (MiB) of one child process."""

    seconds: float
    peak_mib: float


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> ProcessCost:
    """Run ``python -m jobs ARGS`` and measure it; raise on a non-zero exit."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "jobs", "-q", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"jobs {' '.join(args)} exited with {status}")
    # ru_maxrss is in KiB on Linux.
    return ProcessCost(seconds, usage.ru_maxrss / 1024)


def last_run_timings(url: str) -> dict[str, float]:
    """Return the stage timings that the newest run recorded."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        raw = connection.execute(
            text("SELECT timings FROM model_runs ORDER BY run_id DESC LIMIT 1")
        ).scalar_one()
    engine.dispose()
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def database_url(backend: str, scratch: Path, postgres_url: str | None) -> str:
    """Create an empty database for ``backend`` and return its URL."""
    if backend == "sqlite":
        return f"sqlite:///{scratch / 'bench.db'}"
    assert postgres_url is not None
    name = f"movie_recs_bench_{os.getpid()}_{int(time.time())}"
    admin = create_engine(
        postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return (
        make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    )


def bench_backend(
    backend: str, data: Path, runs: int, postgres_url: str | None
) -> list[str]:
    """Measure one backend; return markdown table rows."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="movie-recs-bench-") as folder:
        scratch = Path(folder)
        url = database_url(backend, scratch, postgres_url)
        env = {**os.environ, "DATABASE_URL": url}
        run_child(["db", "upgrade"], env, scratch)
        ingest = run_child(["ingest", str(data)], env, scratch)
        rows.append(
            f"| {backend} | ingest | {ingest.seconds:.2f} | {ingest.peak_mib:.0f} | |"
        )
        for number in range(1, runs + 1):
            cost = run_child(["run-once"], env, scratch)
            stages = last_run_timings(url)
            detail = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            rows.append(
                f"| {backend} | run-once #{number} | {cost.seconds:.2f} | "
                f"{cost.peak_mib:.0f} | {detail} |"
            )
    return rows


def start_throwaway_postgres() -> tuple[str, object]:
    """Start the test suite's throwaway PostgreSQL server."""
    sys.path.insert(0, str(REPO / "tests"))
    from pg_server import start_postgres

    server = start_postgres()
    return server.url, server


def main() -> None:
    """Parse arguments, run the measurements and print a markdown table."""
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
        "--runs", type=int, default=2, help="run-once repetitions (default: 2)"
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
        print("| backend | step | wall s | peak RSS MiB | stages (s) |")
        print("|---|---|---|---|---|")
        for backend in backends:
            for row in bench_backend(backend, args.data, args.runs, postgres_url):
                print(row, flush=True)
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

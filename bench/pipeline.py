"""Time ``jobs ingest`` and ``jobs run-once`` as whole processes, per backend.

For each backend it creates a fresh database, runs ``python -m jobs db
upgrade``, ``ingest`` and ``run-once`` (``--runs`` times) as child
processes, and prints wall time and peak resident memory of each process
and the seconds per stage that the run recorded in ``model_runs.timings``.

    python bench/pipeline.py --data /path/to/ml-1m
    python bench/pipeline.py --data DIR --backend sqlite --runs 3
    python bench/pipeline.py --data /path/to/ml-1m --backend sqlite \
        --config bench/no-holdout.toml --tutorial --runs 3

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
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent


@dataclass
class ProcessCost:
    """Wall seconds and peak resident memory (MiB) of one child process."""

    seconds: float
    peak_mib: float


class ChildFailed(RuntimeError):
    """A measured child process exited with a non-zero status."""

    def __init__(self, command: str, exit_code: int) -> None:
        super().__init__(f"{command} exited with status {exit_code}")
        self.command = command
        self.exit_code = exit_code


def measure_process(command: list[str], env: dict[str, str], cwd: Path) -> ProcessCost:
    """Run ``command`` with stdout discarded and measure it.

    Raises:
        ChildFailed: The process exited with a non-zero status. A process
            killed by signal N has exit code -N.
    """
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code != 0:
        program = Path(command[0]).name
        raise ChildFailed(" ".join([program, *command[1:]]), exit_code)
    # ru_maxrss is in KiB on Linux.
    return ProcessCost(seconds, usage.ru_maxrss / 1024)


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> ProcessCost:
    """Run ``python -m jobs -q ARGS`` and measure it, as ``measure_process`` does."""
    return measure_process([sys.executable, "-m", "jobs", "-q", *args], env, cwd)


def last_run_record(url: str) -> dict[str, Any]:
    """Return the newest ``model_runs`` row, with its JSON columns decoded."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        row = (
            connection.execute(
                text("SELECT * FROM model_runs ORDER BY run_id DESC LIMIT 1")
            )
            .mappings()
            .one()
        )
    engine.dispose()

    # PostgreSQL's driver decodes JSON columns, but SQLite returns the text.
    record = dict(row)
    for column in ("settings", "timings", "metrics"):
        if isinstance(record.get(column), str):
            record[column] = json.loads(record[column])
    return record


def last_run_timings(url: str) -> dict[str, float]:
    """Return the stage timings that the newest run recorded."""
    return dict(last_run_record(url)["timings"])


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
    backend: str,
    data: Path,
    runs: int,
    postgres_url: str | None,
    config: Path | None = None,
    tutorial: bool = False,
) -> list[str]:
    """Measure one backend; return markdown table rows.

    With ``tutorial``, each run-once follows a run of ``bench/tutorial.py``
    on the same data, so both see the same machine load, and a last row
    gives the ratio of their fastest runs.
    """
    rows = []
    run_once_seconds: list[float] = []
    tutorial_seconds: list[float] = []
    config_args = [] if config is None else ["--config", str(config.resolve())]
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
            if tutorial:
                reference = measure_process(
                    [
                        sys.executable,
                        str(REPO / "bench" / "tutorial.py"),
                        "--data",
                        str(data),
                    ],
                    env,
                    scratch,
                )
                tutorial_seconds.append(reference.seconds)
                rows.append(
                    f"| tutorial | pipeline #{number} | {reference.seconds:.2f} | "
                    f"{reference.peak_mib:.0f} | |"
                )
            cost = run_child([*config_args, "run-once"], env, scratch)
            run_once_seconds.append(cost.seconds)
            stages = last_run_timings(url)
            detail = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            rows.append(
                f"| {backend} | run-once #{number} | {cost.seconds:.2f} | "
                f"{cost.peak_mib:.0f} | {detail} |"
            )
    if tutorial:
        ratios = [
            ours / theirs
            for ours, theirs in zip(run_once_seconds, tutorial_seconds, strict=True)
        ]
        rows.append(
            f"| {backend} | run-once / tutorial | "
            f"{min(run_once_seconds) / min(tutorial_seconds):.3f} | | "
            f"fastest over fastest; per pair {', '.join(f'{r:.3f}' for r in ratios)} |"
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
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file for run-once, such as one with [evaluation] "
        "enabled = false (default: built-in settings)",
    )
    parser.add_argument(
        "--tutorial",
        action="store_true",
        help="run bench/tutorial.py before each run-once and print the ratio "
        "of their wall times (--data must be the ml-1m folder)",
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
            rows = bench_backend(
                backend,
                args.data,
                args.runs,
                postgres_url,
                config=args.config,
                tutorial=args.tutorial,
            )
            for row in rows:
                print(row, flush=True)
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

"""Time ingest and run-once on synthetic data of growing size, per backend.

For each size (default 1M, 10M and 20M ratings) it generates a data set
with ``python -m jobs.synthetic``, which scales users and movies with the
number of ratings. Then, on each backend, it creates a fresh database and
runs ``python -m jobs db upgrade``, ``ingest`` and ``run-once`` as child
processes. It prints the wall seconds and peak resident memory of each
process, the seconds per stage that the run recorded in
``model_runs.timings``, and at the end how ingest and run-once grow
against the number of ratings.

    python bench/scale.py --workdir /var/tmp/scale
    python bench/scale.py --sizes 100k,300k --backend both --json scale.json
    python bench/scale.py --config bench.toml   # e.g. [evaluation] enabled = false

The jobs run in a scratch folder, so they read no ``./config.toml``. They
use ``--config``, else ``$MOVIE_RECS_CONFIG``, else built-in defaults, and
the database URL always comes from ``DATABASE_URL``, which overrides any
``[database] url`` in the file.

``--workdir`` keeps the generated data and reuses a folder generated with
the same size, seed and NumPy version. SQLite databases are created in
scratch folders under it. Each database is deleted after its measurement,
and a PostgreSQL one with DROP DATABASE.

PostgreSQL: ``--postgres-url`` names a role that may create databases.
Without it, the script starts a throwaway server from the local PostgreSQL
binaries, with the test suite's ``tests/pg_server.py`` (fsync off).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import (
    REPO,
    ChildFailed,
    ProcessCost,
    database_url,
    last_run_record,
    measure_process,
    run_child,
    start_throwaway_postgres,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from jobs.config import CONFIG_ENV, Settings, load_settings
from jobs.errors import ConfigError

DEFAULT_SIZES = (1_000_000, 10_000_000, 20_000_000)
SIZE_SUFFIXES = {"k": 1_000, "M": 1_000_000}
# Columns of the newest model_runs row that go into the JSON report.
RUN_RECORD_COLUMNS = (
    "status",
    "n_users",
    "n_movies",
    "n_ratings",
    "n_interactions",
    "n_recommendations",
    "n_similar",
    "settings",
    "metrics",
)
DATA_FILES = ("movies.dat", "ratings.dat", "users.dat")


@dataclass
class DataShape:
    """Size of one generated data set and what its generation cost."""

    n_ratings: int
    n_users: int
    n_movies: int
    seed: int
    numpy_version: str
    folder: str
    generate_seconds: float
    generate_peak_mib: float
    # True when an earlier run generated the folder. The costs are from that run.
    reused: bool = False


@dataclass
class RunOnceFigures:
    """One ``run-once`` process and the stage seconds it recorded."""

    cost: ProcessCost
    stages: dict[str, float]


@dataclass
class BackendFigures:
    """Measurements of one backend at one size."""

    backend: str
    n_ratings: int
    # Cost of the "db upgrade" and "ingest" processes, by step name.
    steps: dict[str, ProcessCost] = field(default_factory=dict)
    runs: list[RunOnceFigures] = field(default_factory=list)
    # Values of RUN_RECORD_COLUMNS in the last run's model_runs row.
    run_record: dict[str, Any] = field(default_factory=dict)
    # The failed command and its exit status, when a step failed.
    error: str | None = None


@dataclass
class Options:
    """Settings shared by every measurement."""

    backends: list[str]
    seed: int
    runs: int
    config: Path | None
    workdir: Path
    postgres_url: str | None


# --- Pure helpers -----------------------------------------------------------


def parse_sizes(value: str) -> list[int]:
    """Parse a comma-separated list such as ``1000000,10M,300k``, sorted ascending.

    Raises:
        argparse.ArgumentTypeError: An entry is not a positive integer with
            an optional ``k`` (thousand) or ``M`` (million) suffix.
    """
    sizes = set()
    for entry in value.split(","):
        entry = entry.strip()
        multiplier = SIZE_SUFFIXES.get(entry[-1:], 1)
        digits = entry[:-1] if multiplier > 1 else entry
        if not digits.isdecimal() or int(digits) == 0:
            raise argparse.ArgumentTypeError(
                f"invalid size {entry!r}: expected a positive number of ratings "
                "such as 1000000, 300k or 10M"
            )
        sizes.add(int(digits) * multiplier)
    return sorted(sizes)


def cpu_model(cpuinfo: str) -> str:
    """Return the first ``model name`` of /proc/cpuinfo text, or "unknown"."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def meminfo_gib(meminfo: str, key: str) -> float | None:
    """Return the ``key`` entry of /proc/meminfo text in GiB, or None if missing."""
    for line in meminfo.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            # The kB of /proc/meminfo are units of 1024 bytes.
            return int(value.split()[0]) / 1024**2
    return None


def marker_matches(
    marker: dict[str, Any], n_ratings: int, seed: int, numpy_version: str
) -> bool:
    """Return whether a data folder's marker records the requested generation.

    Equal seeds give equal files only under the same NumPy version, so a
    folder generated under another version is not reused.
    """
    return (
        marker.get("n_ratings") == n_ratings
        and marker.get("seed") == seed
        and marker.get("numpy_version") == numpy_version
    )


def growth_rows(figures: Iterable[BackendFigures]) -> list[dict[str, Any]]:
    """Compute each backend's times and their ratio to its smallest size.

    Failed measurements are left out, so the base is the smallest size that
    succeeded. Run-once figures are medians over the repetitions. The
    recorded ``total`` leaves out interpreter start-up, imports and the
    publish stage, which the process wall time includes.
    """
    succeeded = [f for f in figures if f.error is None and f.runs]
    rows = []
    for backend in dict.fromkeys(f.backend for f in succeeded):
        sizes = sorted(
            (f for f in succeeded if f.backend == backend), key=lambda f: f.n_ratings
        )
        base = _growth_figures(sizes[0])
        for figures_at_size in sizes:
            current = _growth_figures(figures_at_size)
            row: dict[str, Any] = {"backend": backend, **current}
            for key, value in current.items():
                row[f"{key}_ratio"] = _ratio(value, base[key])
            rows.append(row)
    return rows


def _growth_figures(figures: BackendFigures) -> dict[str, float | None]:
    totals = [run.stages["total"] for run in figures.runs if "total" in run.stages]
    return {
        "n_ratings": figures.n_ratings,
        "ingest_seconds": figures.steps["ingest"].seconds,
        "run_once_seconds": statistics.median(r.cost.seconds for r in figures.runs),
        "run_total_seconds": statistics.median(totals) if totals else None,
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def format_stages(stages: dict[str, float]) -> str:
    """Format stage seconds as ``read 0.52, build 0.43, ...`` in recorded order."""
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items())


# --- Machine ----------------------------------------------------------------


def describe_machine() -> dict[str, Any]:
    """Return the CPU, cores, memory and library versions of this machine."""
    return {
        "cpu_model": cpu_model(_read_proc("cpuinfo")),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": meminfo_gib(_read_proc("meminfo"), "MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": importlib.metadata.version("numpy"),
        "implicit": importlib.metadata.version("implicit"),
        "sqlite": sqlite3.sqlite_version,
    }


def sample_load() -> dict[str, Any]:
    """Return the 1, 5 and 15 minute load averages and the available memory."""
    return {
        "load_average": list(os.getloadavg()),
        "memory_available_gib": meminfo_gib(_read_proc("meminfo"), "MemAvailable"),
    }


def _read_proc(name: str) -> str:
    try:
        return (Path("/proc") / name).read_text()
    except OSError:
        return ""


def postgres_version(postgres_url: str) -> str:
    """Return the server_version setting of the server at ``postgres_url``."""
    engine = create_engine(postgres_url, poolclass=NullPool)
    with engine.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    return str(version)


def print_machine(machine: dict[str, Any], load: dict[str, Any]) -> None:
    memory = machine["memory_gib"]
    versions = (
        f"Python {machine['python']}, NumPy {machine['numpy']}, "
        f"implicit {machine['implicit']}, SQLite {machine['sqlite']}"
    )
    if "postgresql" in machine:
        versions += f", PostgreSQL {machine['postgresql']}"
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), "
        f"{'unknown' if memory is None else f'{memory:.1f} GiB'} memory"
    )
    print(f"software: {versions}")
    print_load("at start", load)


def print_load(when: str, load: dict[str, Any]) -> None:
    averages = " ".join(f"{value:.2f}" for value in load["load_average"])
    available = load["memory_available_gib"]
    memory = "unknown" if available is None else f"{available:.1f} GiB"
    print(
        f"load average {when}: {averages} (1, 5, 15 min), memory available {memory}",
        flush=True,
    )


# --- Configuration ----------------------------------------------------------


def load_job_settings(flag: Path | None) -> tuple[Path | None, Settings]:
    """Load the settings that every jobs command will use.

    Returns:
        The absolute path of the settings file (None when the jobs use
        built-in defaults) and the settings loaded from it.

    Raises:
        ConfigError: The file is missing or invalid for this version of jobs.
    """
    chosen = flag or os.environ.get(CONFIG_ENV)
    if not chosen:
        return None, Settings()
    path = Path(chosen).resolve()
    # The bench passes DATABASE_URL, so the file's [database] url is unused.
    return path, load_settings(path, environ={})


def describe_settings(config: Path | None, settings: Settings) -> str:
    """Return a line that names the settings source and whether the holdout runs."""
    source = "built-in defaults" if config is None else str(config)
    enabled = settings.evaluation.enabled
    return f"{source}, [evaluation] enabled = {str(enabled).lower()}"


# --- Data -------------------------------------------------------------------


def prepare_data(n_ratings: int, options: Options) -> DataShape:
    """Reuse or generate the synthetic data set of ``n_ratings`` ratings."""
    folder = options.workdir / f"synthetic-{n_ratings}-seed{options.seed}"
    marker = folder.with_name(folder.name + ".json")
    numpy_version = importlib.metadata.version("numpy")

    shape = _reusable_shape(folder, marker, n_ratings, options.seed, numpy_version)
    if shape is not None:
        return shape

    # Remove the marker first, so that an interrupted generation is not reused.
    marker.unlink(missing_ok=True)
    cost = measure_process(
        [
            sys.executable,
            "-m",
            "jobs.synthetic",
            str(folder),
            "--ratings",
            str(n_ratings),
            "--seed",
            str(options.seed),
        ],
        dict(os.environ),
        REPO,
    )
    shape = DataShape(
        n_ratings=_count_lines(folder / "ratings.dat"),
        n_users=_count_lines(folder / "users.dat"),
        n_movies=_count_lines(folder / "movies.dat"),
        seed=options.seed,
        numpy_version=numpy_version,
        folder=str(folder),
        generate_seconds=cost.seconds,
        generate_peak_mib=cost.peak_mib,
    )
    marker.write_text(json.dumps(dataclasses.asdict(shape), indent=2) + "\n")
    return shape


def _reusable_shape(
    folder: Path, marker: Path, n_ratings: int, seed: int, numpy_version: str
) -> DataShape | None:
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not marker_matches(recorded, n_ratings, seed, numpy_version):
        return None
    if not all((folder / name).is_file() for name in DATA_FILES):
        return None
    return DataShape(**{**recorded, "reused": True})


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            count += block.count(b"\n")
    return count


# --- Measurements -----------------------------------------------------------


def measure_backend(backend: str, shape: DataShape, options: Options) -> BackendFigures:
    """Run db upgrade, ingest and run-once on a fresh database of ``backend``.

    A failed step ends this measurement and is recorded in ``error``. The
    caller then goes on with the next backend or size.
    """
    figures = BackendFigures(backend, shape.n_ratings)
    with tempfile.TemporaryDirectory(
        prefix="movie-recs-scale-db-", dir=options.workdir
    ) as folder:
        scratch = Path(folder)
        url = database_url(backend, scratch, options.postgres_url)
        try:
            _measure_steps(figures, url, Path(shape.folder), scratch, options)
        except ChildFailed as exc:
            figures.error = str(exc)
            _print_row(shape.n_ratings, backend, f"failed: {exc}")
        finally:
            if backend == "postgresql" and options.postgres_url is not None:
                drop_database(url, options.postgres_url)
    return figures


def _measure_steps(
    figures: BackendFigures, url: str, data: Path, scratch: Path, options: Options
) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    config = [] if options.config is None else ["--config", str(options.config)]

    cost = run_child([*config, "db", "upgrade"], env, scratch)
    figures.steps["db upgrade"] = cost
    _print_row(figures.n_ratings, figures.backend, "db upgrade", cost)

    cost = run_child([*config, "ingest", str(data)], env, scratch)
    figures.steps["ingest"] = cost
    _print_row(figures.n_ratings, figures.backend, "ingest", cost)

    for number in range(1, options.runs + 1):
        cost = run_child([*config, "run-once"], env, scratch)
        record = last_run_record(url)
        figures.runs.append(RunOnceFigures(cost, dict(record["timings"])))
        stages = format_stages(record["timings"])
        _print_row(
            figures.n_ratings, figures.backend, f"run-once #{number}", cost, stages
        )
    figures.run_record = {column: record.get(column) for column in RUN_RECORD_COLUMNS}


def _print_row(
    n_ratings: int,
    backend: str,
    step: str,
    cost: ProcessCost | None = None,
    stages: str = "",
) -> None:
    seconds = "" if cost is None else f"{cost.seconds:.2f}"
    peak = "" if cost is None else f"{cost.peak_mib:.0f}"
    print(
        f"| {n_ratings} | {backend} | {step} | {seconds} | {peak} | {stages} |",
        flush=True,
    )


def drop_database(url: str, postgres_url: str) -> None:
    """Drop the database that ``url`` names, warning on stderr if that fails."""
    name = make_url(url).database
    admin = create_engine(
        postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    quoted = admin.dialect.identifier_preparer.quote_identifier(str(name))
    try:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
    except SQLAlchemyError as exc:
        print(f"warning: dropping database {name} failed: {exc}", file=sys.stderr)
    finally:
        admin.dispose()


def measure_sizes(
    sizes: list[int], options: Options, report: dict[str, Any], json_path: Path | None
) -> None:
    """Measure every backend at every size, filling ``report`` as it goes.

    The JSON file is rewritten after each size, so that a long run that
    fails or is interrupted keeps the figures of the sizes it finished.
    """
    for n_ratings in sizes:
        try:
            shape = prepare_data(n_ratings, options)
        except ChildFailed as exc:
            report["generation_errors"].append(str(exc))
            _print_row(n_ratings, "data", f"failed: {exc}")
            continue
        report["shapes"].append(shape)
        _print_shape(shape)
        for backend in options.backends:
            report["figures"].append(measure_backend(backend, shape, options))
        if json_path is not None:
            write_json(json_path, report)


def _print_shape(shape: DataShape) -> None:
    counts = f"{shape.n_users} users, {shape.n_movies} movies"
    if shape.reused:
        _print_row(shape.n_ratings, "data", f"reuse: {counts}")
    else:
        cost = ProcessCost(shape.generate_seconds, shape.generate_peak_mib)
        _print_row(shape.n_ratings, "data", f"generate: {counts}", cost)


# --- Report -----------------------------------------------------------------


def print_shapes(shapes: list[DataShape], figures: list[BackendFigures]) -> None:
    """Print each data set's shape and what the first successful run read from it."""
    print()
    print(
        "| ratings | users | movies | ratings per user | density % "
        "| movies with a positive | positives |"
    )
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        record = next(
            (
                f.run_record
                for f in figures
                if f.n_ratings == shape.n_ratings and f.run_record
            ),
            {},
        )
        density = 100 * shape.n_ratings / (shape.n_users * shape.n_movies)
        print(
            f"| {shape.n_ratings} | {shape.n_users} | {shape.n_movies} "
            f"| {shape.n_ratings / shape.n_users:.1f} | {density:.3f} "
            f"| {record.get('n_movies', '')} | {record.get('n_interactions', '')} |"
        )


def print_growth(rows: list[dict[str, Any]], figures: list[BackendFigures]) -> None:
    """Print the growth table and any measurement that failed."""
    print()
    print(
        "| backend | ratings | x ratings | ingest s | x ingest | run-once s "
        "| x run-once | run total s | x run total |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [row["backend"], str(row["n_ratings"]), _times(row["n_ratings_ratio"])]
        for key in ("ingest_seconds", "run_once_seconds", "run_total_seconds"):
            value = row[key]
            cells.append("" if value is None else f"{value:.2f}")
            cells.append(_times(row[f"{key}_ratio"]))
        print("| " + " | ".join(cells) + " |")
    for failed in (f for f in figures if f.error is not None):
        print(
            f"not in the table: {failed.backend} at {failed.n_ratings}: {failed.error}"
        )


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.1f}x"


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` through a temporary file and a rename."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(
        json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    os.replace(partial, path)


def _json_default(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- Command line -----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated numbers of ratings, with optional k or M suffix "
        "(default: 1M,10M,20M)",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="backend to measure (default: both)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder for the generated data, which later runs reuse, and for the "
        "SQLite databases while they are measured (default: a temporary folder, "
        "deleted at the end)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write every figure to FILE"
    )

    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"settings file passed to every jobs command (default: ${CONFIG_ENV}, "
        "else built-in defaults)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the generator (default: 42)"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="run-once repetitions per size (default: 1)"
    )
    parser.add_argument(
        "--postgres-url",
        help="URL of a PostgreSQL role that may create databases "
        "(default: start a throwaway server)",
    )
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line, and load the jobs' settings."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs {args.runs} is invalid: it must be at least 1")

    # Load the settings here, so that an invalid file fails before any data
    # is generated.
    try:
        args.config, args.settings = load_job_settings(args.config)
    except ConfigError as exc:
        parser.error(f"invalid settings file: {exc}")
    return args


def main() -> int:
    """Run the measurements and print the tables.

    Returns:
        The exit status: 1 if a generation or a measured step failed, else 0.
    """
    args = parse_arguments()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with ExitStack() as cleanup:
        workdir = args.workdir
        if workdir is None:
            temporary = tempfile.TemporaryDirectory(prefix="movie-recs-scale-")
            workdir = Path(cleanup.enter_context(temporary))
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)

        postgres_url = args.postgres_url
        if "postgresql" in backends and postgres_url is None:
            postgres_url, server = start_throwaway_postgres()
            cleanup.callback(server.stop)  # type: ignore[attr-defined]

        options = Options(
            backends, args.seed, args.runs, args.config, workdir, postgres_url
        )
        report = _start_report(options, args.settings)
        measure_sizes(args.sizes, options, report, args.json)
        _finish_report(report, args.json)
    failed = any(f.error is not None for f in report["figures"])
    return 1 if failed or report["generation_errors"] else 0


def _start_report(options: Options, settings: Settings) -> dict[str, Any]:
    machine = describe_machine()
    if options.postgres_url is not None:
        machine["postgresql"] = postgres_version(options.postgres_url)
    load = sample_load()
    print_machine(machine, load)
    print(f"settings: {describe_settings(options.config, settings)}")
    print("peak RSS counts the jobs process alone, not the PostgreSQL server")
    print()
    print("| ratings | backend | step | wall s | peak RSS MiB | stages (s) |")
    print("|---|---|---|---|---|---|", flush=True)
    return {
        "command": sys.argv,
        "config": options.config,
        "evaluation_enabled": settings.evaluation.enabled,
        "machine": machine,
        "load_at_start": load,
        "load_at_end": None,
        "shapes": [],
        "generation_errors": [],
        "figures": [],
        "growth": [],
    }


def _finish_report(report: dict[str, Any], json_path: Path | None) -> None:
    report["growth"] = growth_rows(report["figures"])
    report["load_at_end"] = sample_load()
    print_shapes(report["shapes"], report["figures"])
    print_growth(report["growth"], report["figures"])
    print()
    print_load("at end", report["load_at_end"])
    if json_path is not None:
        write_json(json_path, report)


if __name__ == "__main__":
    sys.exit(main())

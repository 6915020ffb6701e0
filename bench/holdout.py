"""Measure ALS ranking quality on a random 80/20 holdout of MovieLens 1M.

Protocol: ratings of 3 or more are positive interactions, and the confidence of a
positive is its rating (``raw``), 1.0 (``binary``) or its BM25 weight (``bm25``).
``implicit.evaluation.train_test_split(train_percentage=0.8, random_state=42)``
splits the user x movie matrix, and ``implicit.evaluation.ranking_metrics_at_k``
scores the top 10 movies of every user with held-out positives, leaving out the
movies that the user has in the training split. A popularity baseline runs on the
same split, and its metrics are also computed independently as a check.

Results go to stdout as a markdown table sorted by nDCG@10 and, with ``--json``,
to a file together with the machine and library versions. Logs go to stderr.

Example::

    python bench/holdout.py --movielens-dir /path/to/ml-1m --json holdout.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import implicit
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k, train_test_split
from threadpoolctl import threadpool_limits

from jobs.confidence import Weighting
from jobs.evaluate import ranking_metrics

log = logging.getLogger("bench.holdout")

MIN_POSITIVE_RATING = 3
TRAIN_PERCENTAGE = 0.8
SPLIT_RANDOM_STATE = 42
MODEL_RANDOM_STATE = 42
K = 10
CONFIDENCE_SCHEMES = ("raw", "binary", "bm25")


# The coordinate search starts from the first value of each axis, so it starts
# at factors=64, regularization=30, alpha=1, iterations=15 with raw confidence.
DEFAULT_AXES: dict[str, tuple[Any, ...]] = {
    "factors": (64, 32, 128),
    "regularization": (30.0, 1.0, 10.0, 60.0, 100.0),
    "alpha": (1.0, 0.5, 2.0),
    "iterations": (15, 30),
    "confidence": ("raw", "binary", "bm25"),
}

METRIC_COLUMNS = (
    ("ndcg", "nDCG@10"),
    ("precision", "precision@10"),
    ("map", "MAP@10"),
    ("auc", "AUC"),
)


class BenchError(Exception):
    """Input that the benchmark cannot use: a missing or malformed ratings file."""


@dataclasses.dataclass(frozen=True)
class AlsConfig:
    """One ALS configuration, with settings named as implicit names them."""

    factors: int
    regularization: float
    alpha: float
    iterations: int
    confidence: str

    @property
    def label(self) -> str:
        """Row label for the results table."""
        return (
            f"ALS factors={self.factors} regularization={self.regularization:g} "
            f"alpha={self.alpha:g} iterations={self.iterations} "
            f"confidence={self.confidence}"
        )


# Implicit 0.7.3's defaults, run as a reference point for the protocol.
IMPLICIT_DEFAULTS = AlsConfig(
    factors=100, regularization=0.01, alpha=1.0, iterations=15, confidence="raw"
)


@dataclasses.dataclass(frozen=True)
class FitTiming:
    """Wall and CPU time of one fit, in seconds.

    A multi-threaded fit whose CPU time is close to its wall time ran on one
    core at a time, for example because other processes took the rest.
    """

    wall_seconds: float
    # Summed over the threads of the process.
    cpu_seconds: float


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Holdout metrics at K=10 and the fit times of one model."""

    label: str
    metrics: dict[str, float]
    fit_timings: list[FitTiming]
    config: AlsConfig | None = None

    @property
    def min_fit_seconds(self) -> float:
        """Fastest fit wall time in seconds, the least disturbed by other processes."""
        return min(timing.wall_seconds for timing in self.fit_timings)

    @property
    def median_fit_seconds(self) -> float:
        """Median fit wall time in seconds."""
        return float(np.median([timing.wall_seconds for timing in self.fit_timings]))


class PopularityRecommender:
    """Recommender that ranks movies by their number of training positives.

    It implements the one method that ``ranking_metrics_at_k`` calls, with the
    signature of implicit's ``recommend``. Ties are broken by lower ``item_idx``.
    """

    def __init__(self) -> None:
        self.item_counts: np.ndarray | None = None
        self.ranked_items: np.ndarray | None = None

    def fit(self, user_items: sp.csr_matrix) -> None:
        """Count the users with a positive for each item.

        Args:
            user_items: CSR matrix, shape ``(n_users, n_items)``.
        """
        self.item_counts = user_items.getnnz(axis=0)
        self.ranked_items = np.argsort(-self.item_counts, kind="stable")

    def recommend(
        self,
        userid: np.ndarray,
        user_items: sp.csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the N most popular items for each user in ``userid``.

        Args:
            userid: ``user_idx`` values, shape ``(n,)``.
            user_items: CSR matrix of the same users' training items, shape
                ``(n, n_items)``, whose items are left out of each list.
            N: list length.
            filter_already_liked_items: whether to leave out ``user_items``.

        Returns:
            ``item_idx`` and counts, both of shape ``(n, N)``.
        """
        if self.item_counts is None or self.ranked_items is None:
            raise RuntimeError("PopularityRecommender.fit must run before recommend")
        n_users = len(userid)
        if not filter_already_liked_items:
            ids = np.tile(self.ranked_items[:N], (n_users, 1))
            return ids, self.item_counts[ids]

        # A user's list comes from the top N + max(row length) items, because at
        # most that many of them can be in the user's training items.
        max_liked = int(np.diff(user_items.indptr).max(initial=0))
        candidates = self.ranked_items[: N + max_liked]
        liked = user_items[:, candidates].toarray() != 0

        ids = np.empty((n_users, N), dtype=np.int32)
        for row in range(n_users):
            ids[row] = candidates[~liked[row]][:N]
        return ids, self.item_counts[ids]


def resolve_ratings_path(movielens_dir: str | None) -> Path:
    """Find ratings.dat from ``--movielens-dir`` or else ``MOVIELENS_DIR``/ml-1m.

    Raises:
        BenchError: neither is set, or ratings.dat is not in the folder.
    """
    if movielens_dir is not None:
        folder = Path(movielens_dir)
    elif "MOVIELENS_DIR" in os.environ:
        folder = Path(os.environ["MOVIELENS_DIR"]) / "ml-1m"
    else:
        raise BenchError(
            "MovieLens folder not set: pass --movielens-dir DIR or set "
            "MOVIELENS_DIR to the folder that contains ml-1m/"
        )
    ratings_path = folder / "ratings.dat"
    if not ratings_path.is_file():
        raise BenchError(
            f"{ratings_path} not found: pass the ml-1m folder with --movielens-dir"
        )
    return ratings_path


def load_positive_user_items(ratings_path: Path) -> sp.csr_matrix:
    """Build the user x movie matrix of positive ratings.

    Only users and movies with at least one positive get a row or column, in the
    order of their ids.

    Returns:
        CSR matrix, shape ``(n_users, n_items)``, float32, whose values are the
        ratings (3 to 5).

    Raises:
        BenchError: the file is not in the ``UserID::MovieID::Rating::Timestamp``
            format.
    """
    # The C parser takes single-character separators only, so "::" becomes ",".
    text = ratings_path.read_bytes().replace(b"::", b",")
    try:
        ratings = pd.read_csv(
            io.BytesIO(text),
            header=None,
            names=["user_id", "movie_id", "rating", "timestamp"],
            dtype="int64",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise BenchError(f"{ratings_path}: invalid ratings file: {exc}") from exc

    positives = ratings[ratings["rating"] >= MIN_POSITIVE_RATING]
    if positives.empty:
        raise BenchError(f"{ratings_path}: no rating of {MIN_POSITIVE_RATING} or more")
    _, user_idx = np.unique(positives["user_id"].to_numpy(), return_inverse=True)
    _, item_idx = np.unique(positives["movie_id"].to_numpy(), return_inverse=True)
    user_items = sp.csr_matrix(
        (positives["rating"].to_numpy(dtype=np.float32), (user_idx, item_idx)),
        shape=(user_idx.max() + 1, item_idx.max() + 1),
    )
    log.info(
        "Loaded %d ratings, %d positives, %d users x %d movies",
        len(ratings),
        user_items.nnz,
        user_items.shape[0],
        user_items.shape[1],
    )
    return user_items


def weight_confidence(user_items: sp.csr_matrix, confidence: str) -> sp.csr_matrix:
    """Turn rating values into confidences as the job does (``jobs.confidence``).

    Args:
        user_items: CSR matrix of ratings, shape ``(n_users, n_items)``.
        confidence: ``raw``, ``binary`` or ``bm25``; ``raw`` is the job's
            ``rating``.

    Returns:
        CSR matrix with the same shape and entries, float32.
    """
    scheme = "rating" if confidence == "raw" else confidence
    return Weighting.of(scheme, user_items).apply(user_items)


def measure_popularity(
    train: sp.csr_matrix, test: sp.csr_matrix, repeats: int
) -> Measurement:
    """Measure the popularity baseline with ``ranking_metrics_at_k``.

    The job's own ``jobs.evaluate.ranking_metrics`` computes precision, MAP
    and nDCG again, so a mismatch shows that the baseline, the protocol or the
    job's evaluation differs from ``ranking_metrics_at_k``.

    Raises:
        RuntimeError: the two computations of the metrics differ.
    """
    model = PopularityRecommender()
    fit_timings = time_fit(lambda: model.fit(train), repeats)
    metrics = ranking_metrics_at_k(model, train, test, K=K, show_progress=False)

    evaluated_users = np.flatnonzero(np.diff(test.indptr))
    item_ids, _ = model.recommend(evaluated_users, train[evaluated_users], N=K)
    job = ranking_metrics(
        item_ids, np.ones(item_ids.shape, dtype=bool), evaluated_users, test
    )
    for name in ("precision", "map", "ndcg"):
        value, by_job = metrics[name], getattr(job, name)
        if not np.isclose(value, by_job, rtol=1e-9, atol=1e-12):
            raise RuntimeError(
                f"popularity {name}: ranking_metrics_at_k gives {value}, "
                f"jobs.evaluate gives {by_job}"
            )
    log.info("Popularity metrics match jobs.evaluate: %s", job)
    return Measurement("popularity", metrics, fit_timings)


def time_fit(fit: Callable[[], object], repeats: int) -> list[FitTiming]:
    """Run ``fit`` ``repeats`` times and return the time of each run."""
    timings = []
    for _ in range(repeats):
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        fit()
        timings.append(
            FitTiming(
                wall_seconds=time.perf_counter() - wall_start,
                cpu_seconds=time.process_time() - cpu_start,
            )
        )
    return timings


def measure_als(
    config: AlsConfig,
    train_by_confidence: dict[str, sp.csr_matrix],
    test: sp.csr_matrix,
    num_threads: int,
    repeats: int,
) -> Measurement:
    """Fit one ALS configuration on the training split and score it on the test split.

    Each repeat fits a new model with ``random_state=42``, so every repeat
    learns the same factors and only the timing differs.
    """
    train = train_by_confidence[config.confidence]
    latest_model: list[AlternatingLeastSquares] = []

    def fit() -> None:
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            use_gpu=False,
            num_threads=num_threads,
            random_state=MODEL_RANDOM_STATE,
        )
        model.fit(train, show_progress=False)
        latest_model[:] = [model]

    fit_timings = time_fit(fit, repeats)
    metrics = ranking_metrics_at_k(
        latest_model[0], train, test, K=K, show_progress=False
    )
    measurement = Measurement(config.label, metrics, fit_timings, config)
    log.info(
        "%s: nDCG@10 %.4f, min fit %.2f s",
        config.label,
        metrics["ndcg"],
        measurement.min_fit_seconds,
    )
    return measurement


def iterate_product(axes: dict[str, tuple[Any, ...]]) -> Iterator[AlsConfig]:
    """Yield every combination of the axis values."""
    names = list(axes)
    for values in itertools.product(*(axes[name] for name in names)):
        yield AlsConfig(**dict(zip(names, values, strict=True)))


def search_coordinates(
    axes: dict[str, tuple[Any, ...]],
    evaluate: Callable[[AlsConfig], Measurement],
    max_passes: int,
) -> None:
    """Maximize nDCG@10 one axis at a time, from the first value of each axis.

    Each pass tries every value of each axis with the other settings at the best
    point so far, and moves the point whenever nDCG@10 improves. The search
    stops after a pass without improvement or after ``max_passes`` passes.
    """
    point = AlsConfig(**{name: values[0] for name, values in axes.items()})
    best = evaluate(point)
    for pass_number in range(1, max_passes + 1):
        improved = False
        for name, values in axes.items():
            for value in values:
                candidate = dataclasses.replace(point, **{name: value})
                measurement = evaluate(candidate)
                if measurement.metrics["ndcg"] > best.metrics["ndcg"]:
                    best, point, improved = measurement, candidate, True
        log.info("Search pass %d ends at %s", pass_number, best.label)
        if not improved:
            break


def run_benchmark(args: argparse.Namespace) -> list[Measurement]:
    """Load the data, split it, and measure popularity and every ALS configuration."""
    user_items = load_positive_user_items(resolve_ratings_path(args.movielens_dir))
    train, test = train_test_split(
        user_items, train_percentage=TRAIN_PERCENTAGE, random_state=SPLIT_RANDOM_STATE
    )
    log.info("Split into %d training and %d test positives", train.nnz, test.nnz)
    train_by_confidence = {
        scheme: weight_confidence(train, scheme) for scheme in CONFIDENCE_SCHEMES
    }

    measurements = [measure_popularity(train, test, args.repeats)]
    cache: dict[AlsConfig, Measurement] = {}

    def evaluate(config: AlsConfig) -> Measurement:
        if config not in cache:
            cache[config] = measure_als(
                config, train_by_confidence, test, args.num_threads, args.repeats
            )
            measurements.append(cache[config])
        return cache[config]

    if not args.skip_reference:
        evaluate(IMPLICIT_DEFAULTS)
    axes = DEFAULT_AXES | args.grid
    if args.search == "product":
        for config in iterate_product(axes):
            evaluate(config)
    else:
        search_coordinates(axes, evaluate, args.max_passes)
    return measurements


def format_table(measurements: list[Measurement]) -> str:
    """Format the measurements as a markdown table, best nDCG@10 first."""
    header = [
        "config",
        *(title for _, title in METRIC_COLUMNS),
        "min fit seconds",
        "median fit seconds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ranked = sorted(measurements, key=lambda m: m.metrics["ndcg"], reverse=True)
    for measurement in ranked:
        cells = [measurement.label]
        cells += [f"{measurement.metrics[key]:.4f}" for key, _ in METRIC_COLUMNS]
        cells.append(f"{measurement.min_fit_seconds:.2f}")
        cells.append(f"{measurement.median_fit_seconds:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(
    path: Path, measurements: list[Measurement], args: argparse.Namespace
) -> None:
    """Write the measurements, in the order they ran, with the protocol and machine."""
    record = {
        "protocol": {
            "min_positive_rating": MIN_POSITIVE_RATING,
            "train_percentage": TRAIN_PERCENTAGE,
            "split_random_state": SPLIT_RANDOM_STATE,
            "model_random_state": MODEL_RANDOM_STATE,
            "K": K,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": read_cpu_model(),
            "python": platform.python_version(),
            "implicit": implicit.__version__,
        },
        "argv": sys.argv[1:],
        "num_threads": args.num_threads,
        "fit_repeats": args.repeats,
        "results": [
            {
                "label": m.label,
                "config": dataclasses.asdict(m.config) if m.config else None,
                "metrics": m.metrics,
                "fit_timings": [dataclasses.asdict(t) for t in m.fit_timings],
            }
            for m in measurements
        ],
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def parse_grid(spec: str) -> dict[str, tuple[Any, ...]]:
    """Parse ``--grid`` text such as ``factors=32,64 confidence=raw,bm25``.

    Raises:
        argparse.ArgumentTypeError: unknown setting, or an invalid value.
    """
    converters: dict[str, Callable[[str], Any]] = {
        "factors": int,
        "regularization": float,
        "alpha": float,
        "iterations": int,
        "confidence": str,
    }
    axes: dict[str, tuple[Any, ...]] = {}
    for item in spec.replace(";", " ").split():
        name, _, values_text = item.partition("=")
        if name not in converters:
            raise argparse.ArgumentTypeError(
                f"unknown setting {name!r} in {item!r}. "
                f"Expected one of {', '.join(converters)}"
            )
        try:
            values = tuple(converters[name](v) for v in values_text.split(","))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"invalid value in {item!r}: expected comma-separated numbers"
            ) from exc
        validate_axis(name, values, item)
        axes[name] = values
    return axes


def validate_axis(name: str, values: tuple[Any, ...], item: str) -> None:
    """Reject values that implicit would not accept for the setting ``name``."""
    if name == "confidence":
        if any(value not in CONFIDENCE_SCHEMES for value in values):
            raise argparse.ArgumentTypeError(
                f"invalid confidence in {item!r}. "
                f"Expected one of {', '.join(CONFIDENCE_SCHEMES)}"
            )
    elif name == "regularization":
        if any(value < 0 for value in values):
            raise argparse.ArgumentTypeError(f"negative regularization in {item!r}")
    elif any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"{name} must be positive in {item!r}")


def format_axes(axes: dict[str, tuple[Any, ...]]) -> str:
    """Format axis values in the ``--grid`` syntax."""
    items = []
    for name, values in axes.items():
        texts = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
        items.append(f"{name}={','.join(texts)}")
    return " ".join(items)


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Measure ALS and popularity ranking quality (precision, MAP, "
        "nDCG and AUC at 10) on an 80/20 random holdout of MovieLens 1M.",
    )
    parser.add_argument(
        "--movielens-dir",
        help="folder that contains ratings.dat (default: $MOVIELENS_DIR/ml-1m)",
    )
    parser.add_argument(
        "--grid",
        type=parse_grid,
        default={},
        help="values to try per setting, for example 'factors=32,64 "
        "regularization=10,30 alpha=1 iterations=15 confidence=raw,bm25'. "
        f"Settings left out keep the built-in values '{format_axes(DEFAULT_AXES)}'",
    )

    parser.add_argument(
        "--search",
        choices=("coordinate", "product"),
        default="coordinate",
        help="'coordinate' tunes one setting at a time, starting from the first "
        "value of each. 'product' fits every combination (default: coordinate)",
    )
    parser.add_argument(
        "--max-passes",
        type=int,
        default=3,
        help="maximum passes over the settings in a coordinate search (default: 3)",
    )

    parser.add_argument(
        "--num-threads",
        type=int,
        default=0,
        help="threads for ALS fitting, where 0 uses every core (default: 0)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fits per configuration, whose min and median wall times the table "
        "shows (default: 1)",
    )
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="skip the reference run with implicit's default settings",
    )

    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.max_passes < 1:
        parser.error(f"--max-passes must be at least 1, got {args.max_passes}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    # implicit's ALS runs its own threads and warns when BLAS runs more than one.
    try:
        with threadpool_limits(1, "blas"):
            measurements = run_benchmark(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(format_table(measurements))
    if args.json is not None:
        write_json(args.json, measurements, args)
        log.info("Wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tune``: a coordinate search over the model settings on a holdout.

The data is split once with the ``[evaluation]`` settings (see
``jobs/evaluate.py``), and each trial fits ALS on the training split and
scores it by nDCG@K. The search starts from the ``[model]`` settings and
changes one setting at a time: for each setting in ``AXES`` it tries every
value with the others at the best point so far, and moves whenever nDCG@K
improves. Passes over the settings repeat until one brings no improvement,
or until the time budget leaves no room for another trial.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine

from db.migrate import require_current
from jobs import dataset, settings_file
from jobs.config import DEFAULT_CONFIG_FILE, ModelSettings, Settings
from jobs.errors import ModelError, NothingToDoError
from jobs.evaluate import Holdout, Metrics

log = logging.getLogger(__name__)

# The values tried for each setting, in the order the search visits them. The
# starting value of a setting stays a candidate even when it is not listed.
# On the MovieLens 1M holdout (docs/benchmarks.md), regularization peaked at
# 60 for every factor count, and 128 factors came within 0.001 nDCG@10 of 96.
# 30 iterations gained nothing over 15. Alpha 0.5 and 2 ranked below 1, and
# binary and BM25 confidence below the rating. Each range brackets those best
# values, so that on other data the search can move either way.
AXES: dict[str, tuple[Any, ...]] = {
    # First, because it changes nDCG@10 the most on ml-1m: in a tune run at
    # 128 factors and 20 iterations, 10 scored 0.336 and 60 scored 0.399. At
    # a low regularization more factors score worse, so factors come after it.
    "regularization": (10.0, 30.0, 60.0, 100.0),
    "factors": (32, 64, 96, 128),
    "iterations": (10, 15, 20),
    "alpha": (0.5, 1.0, 2.0),
    "confidence": ("rating", "binary", "bm25"),
}

# The settings that the search changes and --write writes, in table order.
TUNED_SETTINGS = ("factors", "regularization", "alpha", "iterations", "confidence")


@dataclass
class Budget:
    """Wall-clock seconds for the whole tune, counted from construction."""

    seconds: float
    clock: Callable[[], float] = time.perf_counter
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        """Return the seconds since the budget started."""
        return self.clock() - self.started

    def allows(self, expected_seconds: float) -> bool:
        """Return whether a step of ``expected_seconds`` would end within budget."""
        return self.elapsed() + expected_seconds <= self.seconds


@dataclass(frozen=True)
class Trial:
    """One fitted and scored point of the search."""

    number: int  # 1-based running order, so 1 is the starting point
    settings: ModelSettings
    metrics: Metrics | None  # None when the fit diverged
    seconds: float  # fit and score
    error: str | None = None

    @property
    def ndcg(self) -> float:
        """Return nDCG@K, or minus infinity for a diverged fit."""
        return -math.inf if self.metrics is None else self.metrics.ndcg


@dataclass(frozen=True)
class Search:
    """Every trial of a coordinate search, in the order they ran."""

    trials: list[Trial]
    # True when the last pass improved nothing, False when the budget ran out.
    converged: bool

    @property
    def start(self) -> Trial:
        """Return the trial of the starting point."""
        return self.trials[0]

    @property
    def best(self) -> Trial:
        """Return the trial with the highest nDCG@K, the earliest among ties."""
        return max(self.trials, key=lambda trial: (trial.ndcg, -trial.number))


@dataclass(frozen=True)
class TuneResult:
    """A finished search and the holdout it ran on."""

    search: Search
    popular: Metrics
    k: int
    n_users: int  # users with at least one hidden positive
    n_held_out: int  # hidden positives
    test_fraction: float
    random_state: int
    budget_seconds: float
    seconds: float  # the whole tune, reading the data included

    @property
    def improved(self) -> bool:
        """Return whether a trial beat the starting point's nDCG@K."""
        return self.search.best.number != self.search.start.number


def run_tune(
    engine: Engine,
    settings: Settings,
    *,
    budget_seconds: int,
    write: bool,
    out: TextIO,
) -> None:
    """Search the model settings, print every trial, and optionally write the best.

    Args:
        engine: a database at the current revision with ratings or favorites.
        settings: ``[model]`` is the starting point, ``[evaluation]`` the split.
        budget_seconds: no trial starts that would end after this many
            seconds, going by the mean trial time so far. With 0, only the
            starting point is measured.
        write: write the best settings into ``[model]`` of ``settings.source``
            (``./config.toml`` when None) if they beat the starting point.
        out: where the table and the closing line go.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
        NothingToDoError: too few positives to hold any out.
        ModelError: every trial diverged.
        ConfigError: the settings file cannot be read, parsed or written.
    """
    path = Path(settings.source or DEFAULT_CONFIG_FILE)
    if write:
        # Fail before the search rather than after minutes of fitting.
        check_writable(path)

    result = tune(engine, settings, budget_seconds)
    print_trials(result, out)

    written = write and result.improved
    if written:
        write_model_settings(path, result.search.best.settings)
        log.info("wrote the best settings to [model] in %s", path)
    print(conclusion(result, path, written=written), file=out)


def tune(
    engine: Engine,
    settings: Settings,
    budget_seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> TuneResult:
    """Read the current data, split it once and search the model settings.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
        NothingToDoError: too few positives to hold any out.
        ModelError: every trial diverged.
    """
    if budget_seconds < 0:
        raise ValueError(f"budget_seconds must be at least 0, got {budget_seconds}")
    budget = Budget(budget_seconds, clock)
    require_current(engine)
    snapshot = dataset.read_snapshot(engine)
    interactions = dataset.build_interactions(
        snapshot, settings.model.min_rating, settings.model.favorite_weight
    )
    if interactions.user_items.nnz == 0:
        raise NothingToDoError(
            "no positive interactions to tune on: load data first with "
            "'python -m jobs ingest DIR' or insert favorites"
        )

    holdout = Holdout.split(interactions.user_items, settings.evaluation)
    popular_started = clock()
    popular = holdout.score_popular()
    log.info(
        "tuning on %d hidden positives of %d users within %g s; popularity "
        "nDCG@%d %.4f in %.1f s",
        holdout.test.nnz,
        len(holdout.users),
        budget_seconds,
        holdout.k,
        popular.ndcg,
        clock() - popular_started,
    )

    search = coordinate_search(settings.model, holdout.score_model, budget, k=holdout.k)
    return TuneResult(
        search=search,
        popular=popular,
        k=holdout.k,
        n_users=len(holdout.users),
        n_held_out=int(holdout.test.nnz),
        test_fraction=settings.evaluation.test_fraction,
        random_state=settings.evaluation.random_state,
        budget_seconds=budget_seconds,
        seconds=budget.elapsed(),
    )


def coordinate_search(
    start: ModelSettings,
    score: Callable[[ModelSettings], Metrics],
    budget: Budget,
    *,
    k: int,
    axes: Mapping[str, Sequence[Any]] = AXES,
) -> Search:
    """Maximize nDCG@K one setting at a time, from ``start``.

    The starting point is always measured. Each later trial starts only when
    the elapsed time plus the mean trial time so far fits in ``budget``, and a
    point already measured is never fitted again.

    Args:
        start: the first point; its other fields are kept in every trial.
        score: fits and scores one point; a ``ModelError`` marks it diverged.
        budget: the time limit, whose clock also times each trial.
        k: the list length of the metrics, for the log lines.
        axes: the values to try for each setting, in visiting order.

    Raises:
        ModelError: every trial diverged.
    """
    trials = [_measure(1, start, score, budget, k)]
    measured = {start}
    point = start
    while True:
        improved = False
        for name, values in axes.items():
            for value in values:
                candidate = dataclasses.replace(point, **{name: value})
                if candidate in measured:
                    continue
                # NOTE: a trial slower than the mean so far (more factors or
                # iterations) can still end past the budget by the difference.
                mean_seconds = sum(trial.seconds for trial in trials) / len(trials)
                if not budget.allows(mean_seconds):
                    _log_budget_stop(trials, budget, mean_seconds)
                    return _finish(trials, converged=False)
                measured.add(candidate)
                trial = _measure(len(trials) + 1, candidate, score, budget, k)
                trials.append(trial)
                if trial.ndcg > _best_ndcg(trials[:-1]):
                    point, improved = candidate, True
        if not improved:
            return _finish(trials, converged=True)


def _measure(
    number: int,
    settings: ModelSettings,
    score: Callable[[ModelSettings], Metrics],
    budget: Budget,
    k: int,
) -> Trial:
    started = budget.clock()
    try:
        metrics = score(settings)
    except ModelError as exc:
        seconds = budget.clock() - started
        log.warning("trial %d (%s) diverged: %s", number, describe(settings), exc)
        return Trial(number, settings, None, seconds, error=str(exc))
    seconds = budget.clock() - started
    log.info(
        "trial %d (%s): nDCG@%d %.4f in %.2f s",
        number,
        describe(settings),
        k,
        metrics.ndcg,
        seconds,
    )
    return Trial(number, settings, metrics, seconds)


def _best_ndcg(trials: list[Trial]) -> float:
    return max(trial.ndcg for trial in trials)


def _log_budget_stop(trials: list[Trial], budget: Budget, mean_seconds: float) -> None:
    log.info(
        "stopping after %d trials: %.0f s elapsed and a trial takes %.1f s on "
        "average, which would pass the %g s budget",
        len(trials),
        budget.elapsed(),
        mean_seconds,
        budget.seconds,
    )


def _finish(trials: list[Trial], converged: bool) -> Search:
    search = Search(trials, converged)
    if search.best.metrics is None:
        raise ModelError(
            f"every trial diverged ({len(trials)} in all); the last error: "
            f"{trials[-1].error}"
        )
    return search


def describe(settings: ModelSettings) -> str:
    """Return the tuned settings as ``name value`` pairs, for logs and output."""
    return ", ".join(
        f"{name} {_format_value(getattr(settings, name))}" for name in TUNED_SETTINGS
    )


def _format_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_trials(result: TuneResult, out: TextIO) -> None:
    """Print every trial, best nDCG@K first, then the popularity baseline."""
    search = result.search
    ending = "converged" if search.converged else "stopped by the budget"
    n_trials = len(search.trials)
    print(
        f"holdout: {result.n_held_out} hidden positives "
        f"({result.test_fraction * 100:g}%, seed {result.random_state}) of "
        f"{result.n_users} users, top {result.k}; {n_trials} "
        f"{'trial' if n_trials == 1 else 'trials'} in {result.seconds:.0f} s of a "
        f"{result.budget_seconds:.0f} s budget, search {ending}",
        file=out,
    )

    k = result.k
    titles = ["#", *TUNED_SETTINGS]
    titles += [f"nDCG@{k}", f"precision@{k}", f"recall@{k}", f"MAP@{k}"]
    titles += ["coverage", "seconds"]
    # At least 4 wide, so that the "#" column fits trial numbers.
    widths = [max(len(title), 4) for title in titles]
    print(_join_cells(titles, widths), file=out)

    ranked = sorted(search.trials, key=lambda trial: (-trial.ndcg, trial.number))
    for trial in ranked:
        cells = [str(trial.number)]
        cells += [_format_value(getattr(trial.settings, n)) for n in TUNED_SETTINGS]
        cells += _metric_cells(trial.metrics)
        cells.append(f"{trial.seconds:.2f}")
        print(_join_cells(cells, widths, _marks(trial, search)), file=out)

    # The baseline's label spans the trial number and the settings columns.
    label_width = sum(widths[: len(TUNED_SETTINGS) + 1]) + 2 * len(TUNED_SETTINGS)
    cells = ["popularity baseline", *_metric_cells(result.popular)]
    print(_join_cells(cells, [label_width, *widths[-6:-1]]), file=out)


def _join_cells(cells: list[str], widths: list[int], marks: str = "") -> str:
    # The first column (trial number or baseline label) is left-aligned.
    row = "  ".join(
        f"{cell:>{width}}" if index else f"{cell:<{width}}"
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
    return f"{row}  {marks}".rstrip()


def _metric_cells(metrics: Metrics | None) -> list[str]:
    if metrics is None:
        return ["diverged", "", "", "", ""]
    values = [metrics.ndcg, metrics.precision, metrics.recall, metrics.map]
    values.append(metrics.coverage)
    return [f"{value:.4f}" for value in values]


def _marks(trial: Trial, search: Search) -> str:
    marks = []
    if trial.number == search.start.number:
        marks.append("start")
    if trial.number == search.best.number:
        marks.append("best")
    return ", ".join(marks)


def conclusion(result: TuneResult, path: Path, *, written: bool) -> str:
    """Return the closing line: the best settings, their gain, and what was written."""
    start, best = result.search.start, result.search.best
    k = result.k
    if not result.improved:
        return (
            f"best: the starting point ({describe(start.settings)}), nDCG@{k} "
            f"{start.ndcg:.4f}; no trial beat it, so nothing was written"
        )

    if start.metrics is None:
        gain = "where the starting point diverged"
    else:
        difference = best.ndcg - start.ndcg
        relative = f", {difference / start.ndcg:+.1%}" if start.ndcg > 0 else ""
        gain = (
            f"against {start.ndcg:.4f} at the starting point "
            f"({difference:+.4f}{relative})"
        )
    line = (
        f"best: trial {best.number} ({describe(best.settings)}), nDCG@{k} "
        f"{best.ndcg:.4f} {gain}; "
    )
    if written:
        return line + f"written to [model] in {path}"
    return line + f"not written (add --write to write it to [model] in {path})"


def write_model_settings(path: Path, model_settings: ModelSettings) -> None:
    """Write the tuned settings of ``model_settings`` into ``[model]`` of ``path``.

    Raises:
        ConfigError: the file cannot be read, is invalid TOML, or cannot be
            written.
    """
    values = {name: getattr(model_settings, name) for name in TUNED_SETTINGS}
    settings_file.write_model_settings(path, values)


check_writable = settings_file.check_writable

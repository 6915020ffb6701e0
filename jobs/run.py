"""``run-once``: read, train, rank, write and publish one run under the run lock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from db.engine import mask_url
from db.migrate import require_current
from jobs import dataset, evaluate, lists, model, publish, run_models
from jobs.confidence import Weighting
from jobs.config import Settings, settings_record
from jobs.control import RunControl, RunStopped
from jobs.errors import NothingToDoError
from jobs.lock import run_lock
from jobs.logs import run_context

log = logging.getLogger(__name__)

T = TypeVar("T")

# Movies per similar-items call; bounds the (movies, candidates) score block.
SIMILAR_BATCH_ITEMS = 4_096


@dataclass
class RunSummary:
    """Outcome of one run: its id, counts and seconds per stage."""

    run_id: int
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    evaluation: evaluate.Evaluation | None = None

    def record(self) -> dict[str, Any]:
        """Return the ``model_runs`` columns that this summary fills."""
        record: dict[str, Any] = {**self.counts, "timings": dict(self.timings)}
        if self.evaluation is not None:
            record.update(self.evaluation.record())
            record["metrics"] = self.evaluation.summary()
        return record


def run_once(
    engine: Engine, settings: Settings, control: RunControl | None = None
) -> RunSummary:
    """Retrain on the current inputs and publish new lists.

    With a ``control``, the run stores its run_id there and checks for a stop
    request before each stage and after each ALS iteration.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
        LockedError: another run holds the lock; nothing was done.
        NothingToDoError: there are no positive interactions to train on.
        ModelError: training diverged; the previous lists stay published.
        RunStopped: ``control`` asked the run to stop; it is recorded
            abandoned and the previous lists stay published.
    """
    require_current(engine)
    with run_lock(engine):
        publish.mark_abandoned(engine)
        _require_interactions(engine)
        run_id = publish.start_run(engine, settings_record(settings))
        summary = RunSummary(run_id)
        if control is not None:
            control.run_id = run_id
        with run_context(run_id):
            log.info("run %d started on %s", run_id, mask_url(engine.url))
            try:
                _stages(engine, settings, summary, control)
            except RunStopped as exc:
                _record_stop(engine, summary, exc)
                raise
            except BaseException as exc:
                _record_failure(engine, summary, exc)
                raise
            log.info("run %d succeeded in %.2f s", run_id, summary.timings["total"])
    return summary


def _record_failure(engine: Engine, summary: RunSummary, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    log.error("run %d failed: %s", summary.run_id, reason)
    try:
        publish.fail_run(engine, summary.run_id, reason, summary.record())
    except SQLAlchemyError as record_error:
        # The database itself may be what failed. The record stays `running`
        # and the next run marks it abandoned; the original error is raised.
        log.error("could not record run %d as failed: %s", summary.run_id, record_error)


def _record_stop(engine: Engine, summary: RunSummary, exc: RunStopped) -> None:
    reason = f"{exc}; stopped before publishing, the previous lists stay published"
    log.warning("run %d abandoned: %s", summary.run_id, reason)
    try:
        publish.fail_run(
            engine, summary.run_id, reason, summary.record(), status="abandoned"
        )
    except SQLAlchemyError as record_error:
        # As for a failure: the next run marks the `running` record abandoned.
        log.error(
            "could not record run %d as abandoned: %s", summary.run_id, record_error
        )


def _require_interactions(engine: Engine) -> None:
    with engine.connect() as connection:
        has_input = connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM ratings) "
                "OR EXISTS (SELECT 1 FROM favorites)"
            )
        ).scalar_one()
    if not has_input:
        raise NothingToDoError(
            "the database has no ratings and no favorites; load data first with "
            "'python -m jobs ingest DIR' or insert favorites"
        )


def _stages(
    engine: Engine,
    settings: Settings,
    summary: RunSummary,
    control: RunControl | None = None,
) -> None:
    started = time.perf_counter()
    timed = _timer(summary, control)
    model_settings = settings.model
    output = settings.output

    # Read before the snapshot: refresh may then see a change twice, never miss it.
    with engine.connect() as connection:
        inputs_as_of = run_models.database_now(connection)
    snapshot = timed("read", lambda: dataset.read_snapshot(engine))
    interactions = timed(
        "build",
        lambda: dataset.build_interactions(
            snapshot, model_settings.min_rating, model_settings.favorite_weight
        ),
    )
    _count_inputs(summary, snapshot, interactions)
    if interactions.user_items.nnz == 0:
        raise NothingToDoError(
            f"no positive interactions: all {snapshot.n_ratings} ratings are below "
            f"[model] min_rating = {model_settings.min_rating} and there are no "
            "favorites"
        )

    on_iteration = None if control is None else lambda _: control.check()
    if settings.evaluation.enabled:
        summary.evaluation = timed(
            "evaluate",
            lambda: _evaluate(interactions, settings, on_iteration),
        )
    weighting = Weighting.of(model_settings.confidence, interactions.user_items)
    confidences = weighting.apply(interactions.user_items)
    als = timed(
        "fit",
        lambda: model.fit_als(
            confidences,
            factors=model_settings.factors,
            regularization=model_settings.regularization,
            alpha=model_settings.alpha,
            iterations=model_settings.iterations,
            random_state=model_settings.random_state,
            on_iteration=on_iteration,
        ),
    )
    timed(
        "save_model",
        lambda: run_models.save_run_model(
            engine,
            summary.run_id,
            als.item_factors,
            interactions.movie_ids,
            model_settings,
            weighting,
            inputs_as_of,
        ),
    )
    summary.counts["n_recommendations"] = timed(
        "recommend",
        lambda: _write_recommendations(
            engine,
            summary.run_id,
            als,
            interactions,
            confidences,
            weighting.item_support,
            output.n,
        ),
    )
    summary.counts["n_similar"] = timed(
        "similar",
        lambda: _write_similar(
            engine, summary.run_id, als, interactions, weighting.item_support, output
        ),
    )
    summary.timings["total"] = round(time.perf_counter() - started, 3)
    timed(
        "publish", lambda: publish.publish_run(engine, summary.run_id, summary.record())
    )
    publish.prune_runs(engine, output.keep_runs)


def _evaluate(
    interactions: dataset.Interactions,
    settings: Settings,
    on_iteration: Callable[[int], None] | None,
) -> evaluate.Evaluation | None:
    try:
        return evaluate.evaluate(
            interactions.user_items, settings.model, settings.evaluation, on_iteration
        )
    except NothingToDoError as exc:
        # Too little data to hold any out is no reason to withhold the lists.
        log.warning("holdout evaluation skipped: %s", exc)
        return None


def _timer(
    summary: RunSummary, control: RunControl | None = None
) -> Callable[[str, Callable[[], T]], T]:
    def timed(stage: str, step: Callable[[], T]) -> T:
        if control is not None:
            control.check()
        started = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - started
        summary.timings[stage] = round(seconds, 3)
        log.info("stage %s done in %.2f s", stage, seconds)
        return result

    return timed


def _count_inputs(
    summary: RunSummary, snapshot: dataset.Snapshot, interactions: dataset.Interactions
) -> None:
    summary.counts.update(
        n_users=interactions.n_users,
        n_movies=interactions.n_items,
        n_ratings=snapshot.n_ratings,
        n_favorites=snapshot.n_favorites,
        n_interactions=int(interactions.user_items.nnz),
    )
    log.info(
        "read %d ratings and %d favorites: %d users, %d movies, %d positives",
        snapshot.n_ratings,
        snapshot.n_favorites,
        interactions.n_users,
        interactions.n_items,
        interactions.user_items.nnz,
    )


def _write_recommendations(
    engine: Engine,
    run_id: int,
    als: Any,
    interactions: dataset.Interactions,
    confidences: Any,
    support: np.ndarray,
    n: int,
) -> int:
    warm = interactions.users_with_positives()
    warm_idx = np.flatnonzero(warm).astype(np.int64)
    cold_idx = np.flatnonzero(~warm).astype(np.int64)

    def batches() -> Iterator[lists.Columns]:
        for batch in model.recommend(als, warm_idx, interactions.seen, n):
            because = model.top_contributors(als, confidences, batch)
            yield lists.recommendation_columns(batch, interactions, "als", because)
        if len(cold_idx):
            popular = model.recommend_popular(support, cold_idx, interactions.seen, n)
            yield lists.recommendation_columns(popular, interactions, "popular")

    with engine.begin() as connection:
        written = publish.write_rows(
            connection, "recommendation_rows", run_id, batches()
        )
    log.info(
        "wrote %d recommendations: %d users from the model, %d by popularity",
        written,
        len(warm_idx),
        len(cold_idx),
    )
    return written


def _write_similar(
    engine: Engine,
    run_id: int,
    als: Any,
    interactions: dataset.Interactions,
    support: np.ndarray,
    output: Any,
) -> int:
    # Only movies with enough positives have factors worth comparing.
    eligible = np.flatnonzero(support >= output.similar_min_support).astype(np.int64)

    def batches() -> Iterator[lists.Columns]:
        for start in range(0, len(eligible), SIMILAR_BATCH_ITEMS):
            query = eligible[start : start + SIMILAR_BATCH_ITEMS]
            batch = model.similar_items(als, query, eligible, output.similar_n)
            yield lists.similar_columns(batch, interactions)

    with engine.begin() as connection:
        written = publish.write_rows(
            connection, "similar_movie_rows", run_id, batches()
        )
    log.info(
        "wrote %d similar movies for %d of %d movies (min support %d positives)",
        written,
        len(eligible),
        interactions.n_items,
        output.similar_min_support,
    )
    return written

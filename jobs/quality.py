"""``evaluate`` and ``explain``: the model's quality and its reasons, for people."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from sqlalchemy import Engine, text

from db.migrate import require_current
from jobs import dataset, evaluate, model, refresh, run_models
from jobs.config import Settings
from jobs.errors import DataError, NothingToDoError, UsageError
from jobs.favorites import load_title_index, require_user
from jobs.published import published_run_id


def evaluate_current(engine: Engine, settings: Settings) -> evaluate.Evaluation:
    """Measure the configured model on a holdout of the current data.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
        NothingToDoError: too few positives to hold any out.
        ModelError: the holdout model diverged.
    """
    require_current(engine)
    snapshot = dataset.read_snapshot(engine)
    interactions = dataset.build_interactions(
        snapshot, settings.model.min_rating, settings.model.favorite_weight
    )
    return evaluate.evaluate(
        interactions.user_items, settings.model, settings.evaluation
    )


def print_evaluation(evaluation: evaluate.Evaluation, out: TextIO) -> None:
    """Print the model's and the baseline's metrics side by side."""
    k = evaluation.k
    print(
        f"holdout: {evaluation.n_held_out} hidden positives "
        f"({evaluation.test_fraction * 100:g}%, seed {evaluation.random_state}) of "
        f"{evaluation.n_users} users, top {k}, in {evaluation.seconds:.1f} s",
        file=out,
    )
    print(f"  {'metric':<14} {'model':>8} {'popular':>8}", file=out)
    for name in evaluate.METRIC_NAMES:
        label = "coverage" if name == "coverage" else f"{name}@{k}"
        model_value = getattr(evaluation.model, name)
        popular_value = getattr(evaluation.popular, name)
        print(f"  {label:<14} {model_value:8.4f} {popular_value:8.4f}", file=out)


def print_json(document: dict[str, Any], out: TextIO) -> None:
    """Print ``document`` as indented JSON."""
    print(json.dumps(document, indent=2), file=out)


@dataclass(frozen=True)
class Contribution:
    """One positive of the user and its share of the explained score."""

    movie_id: int
    title: str
    # The positive's strength: its rating, or favorite_weight for a favorite.
    strength: float
    score: float


@dataclass(frozen=True)
class Explanation:
    """A score of ``movie_id`` for ``user_id``, split by the user's positives.

    ``score`` comes from solving the user's current positives against the
    published item factors, so it differs slightly from the published score,
    which the last ALS iteration left.
    """

    run_id: int
    user_id: int
    movie_id: int
    title: str
    score: float
    contributions: list[Contribution]
    # The published rank, score and cited movie, when the movie is in the list.
    rank: int | None
    published_score: float | None
    because_movie_id: int | None
    seen: bool


def explain(
    engine: Engine, user: str, title: str | None, movie_id: int | None = None
) -> Explanation:
    """Break the published model's score of a movie for a user into contributions.

    The user's current ratings and favorites are solved against the published
    run's item factors, as ``refresh`` does, and implicit's ``explain`` splits
    the score among the user's positives.

    Raises:
        UsageError: neither a title nor a movie_id.
        DataError: unknown user or movie, or a movie the model has no factors for.
        NothingToDoError: nothing is published yet, or none of the user's
            positives is a movie of the published model.
    """
    require_current(engine)
    with engine.connect() as connection:
        user_id = require_user(connection, user)
        titles = load_title_index(connection)
        if movie_id is not None and title is not None:
            raise UsageError("give a TITLE or --movie-id, not both")
        if movie_id is not None:
            movie = titles.by_id(movie_id)
            if movie is None:
                raise DataError(f"movie_id {movie_id} not found in the movies table")
        elif title is not None:
            movie = titles.resolve(title)
        else:
            raise UsageError("explain needs a TITLE or --movie-id")
        run_id = published_run_id(engine)
        if run_id is None:
            raise NothingToDoError(
                "no run has been published yet; run: python -m jobs run-once"
            )
        saved = run_models.load_run_model(connection, run_id)
        if saved is None:
            raise NothingToDoError(
                f"the published run {run_id} stored no model; the next run-once "
                "stores one"
            )
        inputs = refresh.read_user_inputs(
            connection,
            np.array([user_id], dtype=np.int64),
            run_models.database_now(connection),
            0,
        )
        published = connection.execute(
            text(
                "SELECT rank, score, because_movie_id FROM recommendations "
                "WHERE user_id = :user_id AND movie_id = :movie_id"
            ),
            {"user_id": user_id, "movie_id": movie.movie_id},
        ).one_or_none()

    item = int(np.searchsorted(saved.movie_ids, movie.movie_id))
    if item >= len(saved.movie_ids) or saved.movie_ids[item] != movie.movie_id:
        raise DataError(
            f"{movie.title} (movie_id {movie.movie_id}) had no positive when run "
            f"{run_id} trained, so the model cannot score it"
        )
    interactions, _ = refresh.user_interactions(saved, inputs)
    if interactions.user_items.nnz == 0:
        raise NothingToDoError(
            f"user_id {user_id} has no positive that run {run_id} was trained on, "
            "so their list is the popular one and cites nothing"
        )
    confidences = saved.weighting.apply(interactions.user_items)
    als = model.model_from_item_factors(
        saved.item_factors, regularization=saved.regularization, alpha=saved.alpha
    )
    score, parts = model.explain(als, confidences, item)
    strengths = dict(
        zip(
            interactions.user_items.indices.tolist(),
            interactions.user_items.data.tolist(),
            strict=True,
        )
    )
    contributions = [
        Contribution(
            movie_id=int(saved.movie_ids[position]),
            title=titles.title_of(int(saved.movie_ids[position])),
            strength=strengths[position],
            score=value,
        )
        for position, value in parts
    ]
    return Explanation(
        run_id=run_id,
        user_id=user_id,
        movie_id=movie.movie_id,
        title=movie.title,
        score=score,
        contributions=contributions,
        rank=None if published is None else int(published.rank),
        published_score=None if published is None else float(published.score),
        because_movie_id=None if published is None else published.because_movie_id,
        seen=bool(interactions.seen.nnz and item in interactions.seen.indices),
    )


def print_explanation(
    explanation: Explanation, out: TextIO, limit: int | None = None
) -> None:
    """Print the score of a user and movie, and its largest ``limit`` contributions.

    Without ``limit`` every contribution is printed. With it, one closing line
    sums the rest.
    """
    print(
        f"{explanation.title} (movie_id {explanation.movie_id}) for user_id "
        f"{explanation.user_id}, run {explanation.run_id}:",
        file=out,
    )
    if explanation.seen:
        print(
            "  the user has rated or favorited it, so it is never recommended to them",
            file=out,
        )
    elif explanation.rank is None:
        print("  not in the user's published list", file=out)
    else:
        print(
            f"  rank {explanation.rank} of the user's published list, score "
            f"{explanation.published_score:.4f}",
            file=out,
        )
    print(
        f"  score {explanation.score:.4f} from the user's current ratings and "
        f"favorites, the sum of {len(explanation.contributions)} contributions:",
        file=out,
    )
    printed = explanation.contributions[:limit]
    for part in printed:
        print(
            f"  {part.score:+9.4f}  {part.title}  (strength {part.strength:g})",
            file=out,
        )
    rest = explanation.contributions[len(printed) :]
    if rest:
        total = sum(part.score for part in rest)
        print(f"  {total:+9.4f}  the other {len(rest)} positives together", file=out)

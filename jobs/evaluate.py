"""Holdout evaluation: how well the model ranks positives it was not shown.

The protocol, the same in ``run-once``, ``evaluate`` and ``tune``:

1. ``implicit.evaluation.train_test_split`` hides a seeded random
   ``test_fraction`` of the positive (user, movie) pairs; the rest is the
   training split.
2. A model with the run's settings is fitted on the training split only.
3. Every user with at least one hidden positive gets a top-K list from the
   whole catalogue (every movie with a positive) minus that user's training
   positives. Beyond ``max_users`` such users, a seeded sample of that many
   is scored.
4. Each list is scored against the user's hidden positives, and the same is
   done for a popularity baseline that ranks movies by training positives.

Precision, MAP and nDCG follow ``implicit.evaluation.ranking_metrics_at_k``:
precision divides all hits by the sum over users of min(K, hidden positives),
so a user with 3 hidden positives can reach 1.0. Recall is the mean over users
of hits / hidden positives. Coverage is the share of the catalogue that
appears in at least one list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from jobs import model
from jobs.confidence import Weighting
from jobs.config import EvaluationSettings, ModelSettings
from jobs.errors import NothingToDoError

log = logging.getLogger(__name__)

METRIC_NAMES = ("precision", "recall", "map", "ndcg", "coverage")


@dataclass(frozen=True)
class Metrics:
    """Ranking metrics at K of one model on one holdout."""

    precision: float
    recall: float
    map: float
    ndcg: float
    coverage: float


@dataclass(frozen=True)
class Evaluation:
    """The holdout metrics of the model and of the popularity baseline."""

    k: int
    test_fraction: float
    random_state: int
    n_users: int  # users scored
    n_held_out: int  # hidden positives, of every user
    model: Metrics
    popular: Metrics
    seconds: float

    def record(self) -> dict[str, float | int]:
        """Return the ``model_runs`` columns of this evaluation."""
        columns: dict[str, float | int] = {
            "eval_k": self.k,
            "eval_users": self.n_users,
            "eval_held_out": self.n_held_out,
        }
        for name in METRIC_NAMES:
            columns[f"eval_{name}"] = getattr(self.model, name)
            columns[f"popular_{name}"] = getattr(self.popular, name)
        return columns

    def summary(self) -> dict[str, object]:
        """Return everything, JSON-ready, for ``model_runs.metrics`` and ``--json``."""
        return asdict(self)


@dataclass(frozen=True)
class Holdout:
    """One seeded split of the positives into training and hidden pairs."""

    train: sp.csr_matrix  # strengths, users x items
    test: sp.csr_matrix  # hidden positives, same shape
    # int64 positions of the scored users: those with a hidden positive, or a
    # seeded sample of max_users of them.
    users: np.ndarray
    k: int
    settings: EvaluationSettings

    @classmethod
    def split(cls, user_items: sp.csr_matrix, settings: EvaluationSettings) -> Holdout:
        """Hide ``settings.test_fraction`` of the positives of ``user_items``.

        Raises:
            NothingToDoError: no positive is left to hide or to train on.
        """
        train, test = model.split_holdout(
            user_items, settings.test_fraction, settings.random_state
        )
        users = np.flatnonzero(np.diff(test.indptr)).astype(np.int64)
        if len(users) > settings.max_users:
            rng = np.random.default_rng(settings.random_state)
            users = np.sort(rng.choice(users, settings.max_users, replace=False))
        if len(users) == 0 or train.nnz == 0:
            raise NothingToDoError(
                f"too few positives to evaluate: {user_items.nnz} in all, "
                f"{test.nnz} hidden and {train.nnz} left to train on"
            )
        k = min(settings.k, user_items.shape[1])
        return cls(train, test, users, k, settings)

    def score_model(
        self,
        model_settings: ModelSettings,
        on_iteration: Callable[[int], None] | None = None,
    ) -> Metrics:
        """Fit a model with ``model_settings`` on the training split and score it."""
        weighting = Weighting.of(model_settings.confidence, self.train)
        als = model.fit_als(
            weighting.apply(self.train),
            factors=model_settings.factors,
            regularization=model_settings.regularization,
            alpha=model_settings.alpha,
            iterations=model_settings.iterations,
            random_state=model_settings.random_state,
            on_iteration=on_iteration,
        )
        batches = list(model.recommend(als, self.users, self.train, self.k))
        ids = np.concatenate([batch.ids for batch in batches])
        valid = np.concatenate([batch.valid for batch in batches])
        return ranking_metrics(ids, valid, self.users, self.test)

    def score_popular(self) -> Metrics:
        """Score the popularity baseline on this split."""
        support = np.bincount(self.train.indices, minlength=self.train.shape[1])
        ranked = model.recommend_popular(
            support.astype(np.int64), self.users, self.train, self.k
        )
        return ranking_metrics(ranked.ids, ranked.valid, self.users, self.test)


def evaluate(
    user_items: sp.csr_matrix,
    model_settings: ModelSettings,
    settings: EvaluationSettings,
    on_iteration: Callable[[int], None] | None = None,
) -> Evaluation:
    """Measure ``model_settings`` and the popularity baseline on a holdout.

    Args:
        user_items: strengths, users x items (``Interactions.user_items``).
        model_settings: the settings of the model to measure.
        settings: the split and K.
        on_iteration: passed to the fit, as in ``model.fit_als``.

    Raises:
        NothingToDoError: too few positives to split.
        ModelError: the holdout model diverged.
    """
    started = time.perf_counter()
    holdout = Holdout.split(user_items, settings)
    model_metrics = holdout.score_model(model_settings, on_iteration)
    popular_metrics = holdout.score_popular()
    evaluation = Evaluation(
        k=holdout.k,
        test_fraction=settings.test_fraction,
        random_state=settings.random_state,
        n_users=len(holdout.users),
        n_held_out=int(holdout.test.nnz),
        model=model_metrics,
        popular=popular_metrics,
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "holdout nDCG@%d %.4f (popularity %.4f), precision %.4f, recall %.4f, "
        "coverage %.3f, over %d users",
        evaluation.k,
        model_metrics.ndcg,
        popular_metrics.ndcg,
        model_metrics.precision,
        model_metrics.recall,
        model_metrics.coverage,
        evaluation.n_users,
    )
    return evaluation


def ranking_metrics(
    ids: np.ndarray, valid: np.ndarray, users: np.ndarray, test: sp.csr_matrix
) -> Metrics:
    """Score top-K lists against hidden positives.

    implicit's ``ranking_metrics_at_k`` computes precision, MAP and nDCG the
    same way, but not recall or coverage, and it would rank every user a
    second time. The tests check that both agree.

    Args:
        ids: item positions, shape ``(len(users), K)``, best first.
        valid: marks real entries of ``ids``; the rest is padding.
        users: user positions of the rows; each has a hidden positive.
        test: hidden positives, CSR users x items.
    """
    n_lists, k = ids.shape
    n_items = test.shape[1]
    if n_lists == 0:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0.0)
    rows = np.repeat(users, k)
    hits = np.asarray(test[rows, ids.ravel()]).reshape(n_lists, k) != 0
    hits &= valid

    n_hidden = np.diff(test.indptr)[users].astype(np.float64)
    n_relevant = np.minimum(k, n_hidden)
    ranks = np.arange(1, k + 1)
    n_hits = hits.sum(axis=1)

    # AP@K: the precision at each hit's rank, summed, over min(K, hidden).
    hits_so_far = np.cumsum(hits, axis=1)
    average_precision = (hits * hits_so_far / ranks).sum(axis=1) / n_relevant

    # nDCG@K: each hit counts 1 / log2(rank + 1), over the best possible sum.
    discounts = 1.0 / np.log2(ranks + 1)
    ideal = np.cumsum(discounts)[n_relevant.astype(np.int64) - 1]
    ndcg = (hits * discounts).sum(axis=1) / ideal

    listed = np.unique(ids[valid])
    return Metrics(
        precision=float(n_hits.sum() / n_relevant.sum()),
        recall=float((n_hits / n_hidden).mean()),
        map=float(average_precision.mean()),
        ndcg=float(ndcg.mean()),
        coverage=float(len(listed) / n_items) if n_items else 0.0,
    )

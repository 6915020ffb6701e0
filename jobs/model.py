"""ALS training and ranking; the only module that imports ``implicit``.

Everything here speaks in matrix positions (``user_idx``, ``item_idx``) and
arrays; callers map positions to database ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.evaluation import train_test_split
from implicit.recommender_base import ModelFitError
from threadpoolctl import threadpool_limits

from jobs.errors import ModelError

log = logging.getLogger(__name__)

# implicit marks a filtered-out candidate with the lowest float32 score.
FILTERED_SCORE = np.finfo(np.float32).min

DIVERGED_HINT = (
    "raise [model] regularization, or lower [model] factors or alpha, in the "
    "settings file"
)

# Users ranked per call to implicit; bounds the (users, items) score block.
RECOMMEND_BATCH_USERS = 8_192


@dataclass(frozen=True)
class RankedBatch:
    """Top-n lists for a block of users or items.

    ``ids`` and ``scores`` have shape ``(len(rows), n)``; ``valid`` marks the
    entries that are real candidates (implicit pads a short list).
    """

    rows: np.ndarray  # int64 positions of the queried users or items
    ids: np.ndarray  # int64 item positions
    scores: np.ndarray  # float32
    valid: np.ndarray  # bool


def fit_als(
    user_items: sp.csr_matrix,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    random_state: int,
    on_iteration: Callable[[int], None] | None = None,
) -> AlternatingLeastSquares:
    """Fit implicit's CPU ALS on ``user_items`` (users x items, float32 confidences).

    BLAS is held to one thread during the fit because implicit parallelises
    over users itself and warns when BLAS threads compete with it.
    ``on_iteration(iteration)`` is called after each iteration; an exception
    it raises ends the fit.

    Raises:
        ModelError: the fit produced non-finite factors (it diverged).
    """
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
        )
        try:
            model.fit(
                user_items, show_progress=False, callback=_fit_callback(on_iteration)
            )
        except ModelFitError as exc:
            raise ModelError(f"training diverged ({exc}); {DIVERGED_HINT}") from exc
    _check_finite(model)
    log.debug(
        "user_factors %s, item_factors %s",
        model.user_factors.shape,
        model.item_factors.shape,
    )
    return model


def _fit_callback(
    on_iteration: Callable[[int], None] | None,
) -> Callable[[int, float, float | None], None] | None:
    if on_iteration is None:
        return None

    # implicit calls back with (iteration, seconds, training loss or None).
    def callback(iteration: int, _seconds: float, _loss: float | None) -> None:
        on_iteration(iteration)

    return callback


def _check_finite(model: AlternatingLeastSquares) -> None:
    for name in ("user_factors", "item_factors"):
        values = getattr(model, name)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ModelError(
                f"training diverged: {bad} of {values.size} {name} are not finite; "
                f"{DIVERGED_HINT}"
            )


def recommend(
    model: AlternatingLeastSquares,
    user_idx: np.ndarray,
    seen: sp.csr_matrix,
    n: int,
    batch_users: int = RECOMMEND_BATCH_USERS,
) -> Iterator[RankedBatch]:
    """Yield the top-``n`` unseen items of each user in ``user_idx``, in batches.

    Args:
        model: a fitted model.
        user_idx: int64 user positions to rank for.
        seen: CSR ``(n_users, n_items)``; nonzero entries are never recommended.
        n: list length; shorter lists come back with ``valid`` False padding.
        batch_users: users per call, which bounds memory.
    """
    n = min(n, model.item_factors.shape[0])
    with threadpool_limits(1, "blas"):
        for start in range(0, len(user_idx), batch_users):
            rows = user_idx[start : start + batch_users]
            ids, scores = model.recommend(rows, seen[rows], N=n)
            yield _ranked(rows, ids, scores)


def similar_items(
    model: AlternatingLeastSquares,
    item_idx: np.ndarray,
    candidates: np.ndarray,
    n: int,
) -> RankedBatch:
    """Rank, for each item in ``item_idx``, the ``n`` most similar ``candidates``.

    Similarity is the cosine of the item factors. An item never appears in its
    own list.
    """
    if len(item_idx) == 0 or len(candidates) == 0:
        empty = np.empty((len(item_idx), 0))
        return RankedBatch(item_idx, empty.astype(np.int64), empty, empty.astype(bool))
    n_query = min(n + 1, len(candidates))
    with threadpool_limits(1, "blas"):
        ids, scores = model.similar_items(item_idx, N=n_query, items=candidates)
    batch = _ranked(item_idx, ids, scores)
    not_self = batch.ids != item_idx[:, None]
    return _drop_and_trim(batch, batch.valid & not_self, n)


def _ranked(rows: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> RankedBatch:
    ids = np.asarray(ids, dtype=np.int64).reshape(len(rows), -1)
    scores = np.asarray(scores, dtype=np.float32).reshape(len(rows), -1)
    valid = np.isfinite(scores) & (scores > FILTERED_SCORE)
    return RankedBatch(np.asarray(rows, dtype=np.int64), ids, scores, valid)


def _drop_and_trim(batch: RankedBatch, keep: np.ndarray, n: int) -> RankedBatch:
    """Move kept entries to the front of each row, in order, and cut rows to n."""
    # A stable sort on "not kept" keeps the score order among kept entries.
    order = np.argsort(~keep, axis=1, kind="stable")[:, :n]
    return RankedBatch(
        batch.rows,
        np.take_along_axis(batch.ids, order, axis=1),
        np.take_along_axis(batch.scores, order, axis=1),
        np.take_along_axis(keep, order, axis=1),
    )


def recommend_popular(
    support: np.ndarray, user_idx: np.ndarray, seen: sp.csr_matrix, n: int
) -> RankedBatch:
    """Rank the most popular unseen items for each user in ``user_idx``.

    Args:
        support: int64 number of positives per item, shape ``(n_items,)``.
        user_idx: int64 user positions.
        seen: CSR ``(n_users, n_items)``; nonzero entries are never recommended.
        n: list length.

    The score of an item is its share of all positives, so it is comparable
    across runs but not with ALS scores. Ties go to the lower item position.
    """
    popular = np.argsort(-support, kind="stable").astype(np.int64)
    share = (support / max(int(support.sum()), 1)).astype(np.float32)
    n = min(n, len(popular))
    rows = np.asarray(user_idx, dtype=np.int64)
    ids = np.zeros((len(rows), n), dtype=np.int64)
    valid = np.zeros((len(rows), n), dtype=bool)
    # Most users fill their list from the first 2n popular items. Users who
    # have seen many of those look again at a head four times as long.
    pending = np.arange(len(rows))
    width = min(2 * n, len(popular))
    while len(pending):
        head = popular[:width]
        for start in range(0, len(pending), RECOMMEND_BATCH_USERS):
            block = pending[start : start + RECOMMEND_BATCH_USERS]
            unseen = seen[rows[block]][:, head].toarray() == 0
            # The k-th unseen item of a row, in popularity order, goes to slot k.
            slot = np.cumsum(unseen, axis=1) - 1
            row, column = np.nonzero(unseen & (slot < n))
            ids[block[row], slot[row, column]] = head[column]
            valid[block[row], slot[row, column]] = True
        short = valid[pending].sum(axis=1) < n
        pending = pending[short] if width < len(popular) else pending[:0]
        width = min(4 * width, len(popular))
    return RankedBatch(rows, ids, np.where(valid, share[ids], 0), valid)


def model_from_item_factors(
    item_factors: np.ndarray, *, regularization: float, alpha: float
) -> AlternatingLeastSquares:
    """Rebuild a fitted model from stored item factors, for ``fold_in_users``.

    Args:
        item_factors: float32, shape ``(n_items, factors)``.
        regularization: the regularization the factors were trained with.
        alpha: the confidence scale the factors were trained with.
    """
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=item_factors.shape[1], regularization=regularization, alpha=alpha
        )
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


def fold_in_users(model: AlternatingLeastSquares, user_items: sp.csr_matrix) -> None:
    """Solve user factors against the fixed item factors and store them in the model.

    This is the user half of one ALS step, solved exactly per user (implicit's
    ``recalculate_user``): x_u = (Y^T C_u Y + regularization * I)^-1 Y^T C_u p_u,
    where C_u is diagonal with alpha * confidence on the user's positives and
    1 elsewhere, and p_u is 1 on the positives. Afterwards
    ``model.user_factors`` has shape ``(n_users, factors)`` and row ``i``
    belongs to row ``i`` of ``user_items``, so ``recommend`` takes positions
    in ``user_items``.

    Args:
        model: a model with item factors, from ``model_from_item_factors``.
        user_items: CSR ``(n_users, n_items)``, float32 confidences; a user
            without positives gets all-zero factors.

    Raises:
        ModelError: the solve produced non-finite factors.
    """
    user_idx = np.arange(user_items.shape[0], dtype=np.int64)
    with threadpool_limits(1, "blas"):
        model.user_factors = model.recalculate_user(user_idx, user_items)
    _check_finite(model)


def split_holdout(
    user_items: sp.csr_matrix, test_fraction: float, random_state: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hide a seeded random ``test_fraction`` of the entries of ``user_items``.

    Returns the training and hidden matrices (CSR, same shape, float32), as
    ``implicit.evaluation.train_test_split`` splits them.
    """
    train, test = train_test_split(
        user_items, train_percentage=1.0 - test_fraction, random_state=random_state
    )
    train = sp.csr_matrix(train, dtype=np.float32)
    test = sp.csr_matrix(test, dtype=np.float32)
    train.sort_indices()
    test.sort_indices()
    return train, test


# Entries (users x longest row) per block of top_contributors. It bounds each
# block's largest array to this many x factors float32 values (8 MiB at 64).
CONTRIBUTOR_BLOCK_ENTRIES = 1 << 15


def top_contributors(
    model: AlternatingLeastSquares,
    confidences: sp.csr_matrix,
    batch: RankedBatch,
) -> np.ndarray:
    """Return, for each entry of ``batch``, the user's positive that adds most to it.

    An ALS score is a sum over the user's positives j of
    ``alpha * c_uj * y_i^T W_u^-1 y_j`` with
    ``W_u = Y^T Y + regularization * I + sum_j (alpha * c_uj - 1) y_j y_j^T``
    (Hu, Koren and Volinsky, section 5). This is the top contribution of
    implicit's ``explain``, solved for blocks of users at a time.

    Args:
        model: the fitted model (item factors, regularization, alpha).
        confidences: the CSR matrix the model was trained on, users x items.
        batch: ranked items of users ``batch.rows``.

    Returns:
        int64 item positions, shape of ``batch.ids``; -1 where ``batch.valid``
        is False or the user has no positive.
    """
    factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    n_factors = factors.shape[1]
    gram = factors.T.astype(np.float64) @ factors.astype(np.float64)
    base = (gram + model.regularization * np.eye(n_factors)).astype(np.float32)
    lengths = np.diff(confidences.indptr)[batch.rows]
    result = np.full(batch.ids.shape, -1, dtype=np.int64)

    def solve(block: np.ndarray) -> None:
        result[block] = _block_contributors(
            factors, base, model.alpha, confidences, batch, block
        )

    # numpy and LAPACK release the GIL, so blocks run on every core. BLAS
    # itself stays on one thread per block.
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(solve, _length_blocks(lengths)))
    result[~batch.valid] = -1
    return result


def _workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def _length_blocks(lengths: np.ndarray) -> Iterator[np.ndarray]:
    """Split row positions into blocks of similar length within the entry budget.

    Rows sorted by length share a block padded to its longest row, so little
    of a block is padding.
    """
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = np.maximum(lengths[order], 1)
    start = 0
    while start < len(order):
        sizes = np.arange(1, len(order) - start + 1)
        fits = sizes * sorted_lengths[start:] <= CONTRIBUTOR_BLOCK_ENTRIES
        size = max(1, int(np.count_nonzero(fits)))
        yield order[start : start + size]
        start += size


def _block_contributors(
    factors: np.ndarray,
    base: np.ndarray,
    alpha: float,
    confidences: sp.csr_matrix,
    batch: RankedBatch,
    block: np.ndarray,
) -> np.ndarray:
    users = batch.rows[block]
    starts = confidences.indptr[users]
    lengths = confidences.indptr[users + 1] - starts
    longest = max(int(lengths.max()), 1)
    # (users, longest) positions into the CSR arrays. Padding is masked out.
    offsets = np.arange(longest)
    present = offsets[None, :] < lengths[:, None]
    entry = np.where(present, starts[:, None] + offsets[None, :], 0)
    items = confidences.indices[entry]
    weight = np.where(present, alpha * confidences.data[entry], 0.0).astype(np.float32)
    extra = np.where(present, weight - 1.0, 0.0).astype(np.float32)

    liked = factors[items]  # (users, longest, factors)
    gram = np.einsum("ulf,ulg->ufg", liked, liked * extra[..., None], optimize=True)
    targets = factors[batch.ids[block]]  # (users, n, factors)
    cholesky = scipy.linalg.cholesky(base + gram, lower=True, check_finite=False)
    solved = scipy.linalg.cho_solve(
        (cholesky, True), targets.transpose(0, 2, 1), check_finite=False
    )
    contribution = np.matmul(liked, solved)  # (users, longest, n)
    # Padding gets -inf, so that argmax never picks it.
    contribution *= np.where(present, weight, np.nan)[..., None]
    np.nan_to_num(contribution, copy=False, nan=-np.inf)
    best = contribution.argmax(axis=1)  # (users, n)
    chosen = np.take_along_axis(items, best, axis=1).astype(np.int64)
    return np.where(lengths[:, None] > 0, chosen, -1)


def explain(
    model: AlternatingLeastSquares, confidences: sp.csr_matrix, item_idx: int
) -> tuple[float, list[tuple[int, float]]]:
    """Break one user's score of ``item_idx`` into its positives' contributions.

    Args:
        model: a model with item factors.
        confidences: one row, CSR ``(1, n_items)``: the user's confidences.
        item_idx: the item to explain.

    Returns:
        The total score and every positive's ``(item_idx, contribution)``,
        largest first (implicit's ``explain``).
    """
    with threadpool_limits(1, "blas"):
        total, contributions, _ = model.explain(
            0, confidences, item_idx, N=max(confidences.nnz, 1)
        )
    return float(total), [(int(item), float(score)) for item, score in contributions]

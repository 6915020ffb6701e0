"""ALS wrapper on tiny matrices: divergence, filtering, padding, popularity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs import model
from jobs.errors import ModelError


def tiny(values: list[list[float]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(values, dtype=np.float32))


def test_divergent_fit_raises_model_error() -> None:
    user_items = tiny([[5, 0], [0, 5], [5, 5]])
    with pytest.raises(ModelError, match="raise \\[model\\] regularization"):
        model.fit_als(
            user_items,
            factors=64,
            regularization=0.0,
            alpha=1.0,
            iterations=15,
            random_state=1,
        )


def test_recommend_skips_seen_and_marks_padding() -> None:
    user_items = tiny([[5, 5, 0], [0, 5, 5], [5, 0, 0]])
    als = model.fit_als(
        user_items,
        factors=2,
        regularization=0.1,
        alpha=1.0,
        iterations=5,
        random_state=1,
    )
    [batch] = list(model.recommend(als, np.arange(3), user_items, n=3))
    valid_ids = [set(batch.ids[row][batch.valid[row]]) for row in range(3)]
    assert valid_ids == [{2}, {0}, {1, 2}]
    assert batch.valid.sum(axis=1).tolist() == [1, 1, 2]


def test_similar_never_lists_itself() -> None:
    user_items = tiny([[5, 5, 0, 0], [5, 5, 0, 0], [0, 0, 5, 5], [0, 0, 5, 5]])
    als = model.fit_als(
        user_items,
        factors=2,
        regularization=0.1,
        alpha=1.0,
        iterations=10,
        random_state=1,
    )
    items = np.arange(4)
    batch = model.similar_items(als, items, items, n=3)
    for row, item in enumerate(items):
        assert item not in batch.ids[row][batch.valid[row]]
    assert batch.ids[0][0] == 1
    assert batch.ids[2][0] == 3


def test_popular_skips_seen() -> None:
    seen = tiny([[1, 0, 0], [0, 0, 0]])
    support = np.array([9, 5, 1])
    batch = model.recommend_popular(support, np.array([0, 1]), seen, n=2)
    assert batch.ids.tolist() == [[1, 2], [0, 1]]
    assert batch.valid.all()
    assert batch.scores[1].tolist() == pytest.approx([9 / 15, 5 / 15])


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=2**16),
)
def test_recommend_invariants(n_users: int, n_items: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.4) * rng.integers(
        3, 6, (n_users, n_items)
    )
    user_items = sp.csr_matrix(dense.astype(np.float32))
    als = model.fit_als(
        user_items,
        factors=2,
        regularization=1.0,
        alpha=1.0,
        iterations=3,
        random_state=1,
    )
    for batch in model.recommend(als, np.arange(n_users), user_items, n=n):
        for row, user in enumerate(batch.rows):
            kept = batch.ids[row][batch.valid[row]]
            scores = batch.scores[row][batch.valid[row]]
            seen = set(np.flatnonzero(dense[user]))
            assert not set(kept) & seen
            assert len(kept) == min(n, n_items - len(seen))
            assert len(set(kept)) == len(kept)
            assert list(scores) == sorted(scores, reverse=True)
            # Valid entries form a prefix, so ranks are contiguous from 1.
            assert batch.valid[row][: len(kept)].all()


def two_blocks() -> sp.csr_matrix:
    """Users 0-9 like items 0-4, users 10-19 like items 5-9."""
    rng = np.random.default_rng(0)
    dense = np.zeros((20, 10), dtype=np.float32)
    dense[:10, :5] = (rng.random((10, 5)) < 0.7) * 5
    dense[10:, 5:] = (rng.random((10, 5)) < 0.7) * 4
    return sp.csr_matrix(dense)


def test_fold_in_reproduces_trained_users() -> None:
    user_items = two_blocks()
    als = model.fit_als(
        user_items,
        factors=3,
        regularization=0.5,
        alpha=1.0,
        iterations=50,
        random_state=1,
    )
    rebuilt = model.model_from_item_factors(
        als.item_factors, regularization=0.5, alpha=1.0
    )
    model.fold_in_users(rebuilt, user_items)
    # After 50 iterations the fit is at its fixed point, where each user's
    # factors are the exact least-squares solution that fold-in computes.
    assert rebuilt.user_factors.shape == (20, 3)
    assert np.allclose(rebuilt.user_factors, als.user_factors, atol=1e-3)


def test_fold_in_user_without_positives_is_zero() -> None:
    user_items = two_blocks()
    als = model.fit_als(
        user_items,
        factors=3,
        regularization=0.5,
        alpha=1.0,
        iterations=5,
        random_state=1,
    )
    rebuilt = model.model_from_item_factors(
        als.item_factors, regularization=0.5, alpha=1.0
    )
    empty = sp.csr_matrix((2, 10), dtype=np.float32)
    model.fold_in_users(rebuilt, empty)
    assert rebuilt.user_factors.tolist() == [[0.0] * 3, [0.0] * 3]


def test_fit_calls_back_each_iteration() -> None:
    seen: list[int] = []
    model.fit_als(
        two_blocks(),
        factors=2,
        regularization=0.5,
        alpha=1.0,
        iterations=4,
        random_state=1,
        on_iteration=seen.append,
    )
    assert seen == [0, 1, 2, 3]

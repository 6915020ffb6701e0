"""Snapshot to matrices: thresholds, favorites, the both-rated-and-favorite rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jobs.dataset import Snapshot, build_interactions


def small_snapshot() -> Snapshot:
    # user 1: likes 10 (5 stars, also a favorite), dislikes 11, likes 12 (3 stars)
    # user 2: dislikes 10 (1 star), favorite 11 (rated 2 as well)
    # user 3: nothing at all
    return Snapshot(
        user_ids=np.array([1, 2, 3]),
        catalogue_ids=np.array([10, 11, 12, 13]),
        rating_user_ids=np.array([1, 1, 1, 2, 2]),
        rating_movie_ids=np.array([10, 11, 12, 10, 11]),
        ratings=np.array([5, 2, 3, 1, 2], dtype=np.float32),
        favorite_user_ids=np.array([1, 2]),
        favorite_movie_ids=np.array([10, 11]),
    )


def test_positions_map_back_to_ids() -> None:
    interactions = build_interactions(small_snapshot(), 3.0, 5.0)
    assert interactions.user_ids.tolist() == [1, 2, 3]
    assert interactions.movie_ids.tolist() == [10, 11, 12]


def test_confidences_follow_the_rule() -> None:
    interactions = build_interactions(small_snapshot(), 3.0, 5.0)
    expected = np.array([[5, 0, 3], [0, 5, 0], [0, 0, 0]], dtype=np.float32)
    assert interactions.user_items.dtype == np.float32
    np.testing.assert_array_equal(interactions.user_items.toarray(), expected)


def test_favorite_weight_below_rating_keeps_rating() -> None:
    interactions = build_interactions(small_snapshot(), 3.0, 2.0)
    assert interactions.user_items[0, 0] == 5.0
    assert interactions.user_items[1, 1] == 2.0


def test_seen_includes_low_ratings() -> None:
    interactions = build_interactions(small_snapshot(), 3.0, 5.0)
    expected = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(interactions.seen.toarray(), expected)


def test_threshold_moves_with_min_rating() -> None:
    interactions = build_interactions(small_snapshot(), 4.0, 5.0)
    assert interactions.user_items.nnz == 2
    assert interactions.movie_ids.tolist() == [10, 11]


def test_movies_without_positive_have_no_column() -> None:
    snapshot = small_snapshot()
    interactions = build_interactions(snapshot, 6.0, 5.0)
    assert interactions.movie_ids.tolist() == [10, 11]
    assert interactions.user_items.nnz == 2


def test_support_and_warm_users() -> None:
    interactions = build_interactions(small_snapshot(), 3.0, 5.0)
    assert interactions.item_support().tolist() == [1, 1, 1]
    assert interactions.users_with_positives().tolist() == [True, True, False]


def test_orphan_rows_skipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = dataclasses.replace(
        small_snapshot(),
        favorite_user_ids=np.array([1, 2, 999, 1]),
        favorite_movie_ids=np.array([10, 11, 10, 777]),
    )
    interactions = build_interactions(snapshot, 3.0, 5.0)
    assert interactions.user_ids.tolist() == [1, 2, 3]
    assert interactions.movie_ids.tolist() == [10, 11, 12]
    assert interactions.user_items.nnz == 3
    assert "skipped 2 favorites rows" in caplog.text
    assert "(999, 10)" in caplog.text

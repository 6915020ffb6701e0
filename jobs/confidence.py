"""Confidence transforms: how a positive's strength becomes ALS confidence.

A positive's strength is its star rating, or ``favorite_weight`` for a
favorite. ``[model] confidence`` chooses the confidence that ALS is trained on:

* ``rating``: the strength itself, as a play count.
* ``binary``: 1 for every positive.
* ``bm25``: the strength weighted as BM25 weights a term in a document, with
  users as documents and movies as terms: a movie liked by many users weighs
  less, and so does each positive of a user with many positives.

BM25 depends on the whole matrix (the number of users, each movie's number of
positives and the average strength per user), so a run stores those figures
with its model and ``refresh`` weights folded-in users with the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SCHEMES = ("rating", "binary", "bm25")

# implicit's bm25_weight defaults (implicit 0.7): K1 saturates a user's
# strength, B scales how much a long user row is discounted.
BM25_K1 = 100.0
BM25_B = 0.8


@dataclass(frozen=True)
class Weighting:
    """A confidence scheme and the matrix figures that BM25 needs.

    ``item_support`` is the number of positives per item and ``n_users`` the
    number of matrix rows; ``average_strength`` is the mean sum of strengths
    per row. The last three are unused by ``rating`` and ``binary``.
    """

    scheme: str
    n_users: int
    average_strength: float
    item_support: np.ndarray  # int64, shape (n_items,)

    @classmethod
    def of(cls, scheme: str, user_items: sp.csr_matrix) -> Weighting:
        """Take the figures of ``user_items`` (strengths, users x items).

        Raises:
            ValueError: ``scheme`` is not one of ``SCHEMES``.
        """
        if scheme not in SCHEMES:
            raise ValueError(f"unknown confidence scheme {scheme!r}; use {SCHEMES}")
        n_users, n_items = user_items.shape
        support = np.bincount(user_items.indices, minlength=n_items).astype(np.int64)
        total = float(user_items.data.sum(dtype=np.float64))
        return cls(scheme, n_users, total / max(n_users, 1), support)

    def record(self) -> dict[str, float | int | str]:
        """Return the scheme and its scalar figures, JSON-ready."""
        return {
            "scheme": self.scheme,
            "n_users": self.n_users,
            "average_strength": self.average_strength,
        }

    def apply(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """Return the confidence matrix of ``user_items`` (strengths, CSR float32).

        The rows may be any users (those of a refresh, say); the columns must
        be the items these figures were taken on.
        """
        if self.scheme == "rating":
            return user_items
        weighted = user_items.copy()
        if self.scheme == "binary":
            weighted.data[:] = 1.0
            return weighted
        # BM25, as implicit.nearest_neighbours.bm25_weight computes it.
        idf = np.log(float(self.n_users)) - np.log1p(self.item_support)
        strength_per_row = np.asarray(user_items.sum(axis=1)).ravel()
        average = self.average_strength if self.average_strength > 0 else 1.0
        length_norm = (1.0 - BM25_B) + BM25_B * strength_per_row / average
        row_of_entry = np.repeat(
            np.arange(user_items.shape[0]), np.diff(user_items.indptr)
        )
        data = user_items.data.astype(np.float64)
        data = (
            data
            * (BM25_K1 + 1.0)
            / (BM25_K1 * length_norm[row_of_entry] + data)
            * idf[user_items.indices]
        )
        weighted.data = data.astype(np.float32)
        return weighted

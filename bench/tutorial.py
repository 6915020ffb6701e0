"""The MovieLens 1M tutorial pipeline, as a reference for ``jobs run-once``.

It does what the common tutorial does, in one process: pandas ``read_csv``
with ``sep="::", engine="python"``, ratings of 3 or more, a title join, a
CSR matrix, implicit's ALS with factors=500, regularization=0.01 and 15
iterations, then recommendations for every user and similar movies for every
movie. It prints seconds per step and peak resident memory.

    python bench/tutorial.py --data /path/to/ml-1m
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits


def main() -> None:
    """Run the pipeline and print its timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="the ml-1m folder (ratings.dat)"
    )
    parser.add_argument(
        "-n", type=int, default=20, help="recommendations per user (default: 20)"
    )
    args = parser.parse_args()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    ratings = pd.read_csv(
        args.data / "ratings.dat",
        sep="::",
        engine="python",
        names=["user_id", "movie_id", "rating", "timestamp"],
    )
    movies = pd.read_csv(
        args.data / "movies.dat",
        sep="::",
        engine="python",
        names=["movie_id", "title", "genres"],
        encoding="latin-1",
    )
    positives = ratings[ratings["rating"] >= 3].merge(movies, on="movie_id")
    timings["load"] = time.perf_counter() - started

    step = time.perf_counter()
    users = positives["user_id"].astype("category")
    items = positives["title"].astype("category")
    user_items = sp.csr_matrix(
        (
            positives["rating"].to_numpy(np.float32),
            (users.cat.codes.to_numpy(), items.cat.codes.to_numpy()),
        )
    )
    timings["matrix"] = time.perf_counter() - step

    step = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=500, regularization=0.01, iterations=15, random_state=42
        )
        model.fit(user_items, show_progress=False)
        timings["fit"] = time.perf_counter() - step

        step = time.perf_counter()
        user_idx = np.arange(user_items.shape[0])
        model.recommend(user_idx, user_items, N=args.n)
        timings["recommend"] = time.perf_counter() - step

        step = time.perf_counter()
        model.similar_items(np.arange(user_items.shape[1]), N=16)
        timings["similar"] = time.perf_counter() - step

    timings["total"] = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(" ".join(f"{name} {seconds:.2f}" for name, seconds in timings.items()))
    print(f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()

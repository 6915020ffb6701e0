"""Tiny synthetic data sets with known expected results, written with plain SQL."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine, text

from jobs.config import DatabaseSettings, ModelSettings, OutputSettings, Settings

# Two taste groups: users 1-15 like movies 1-20, users 16-30 like movies 21-40.
GROUP_A_USERS = range(1, 16)
GROUP_B_USERS = range(16, 31)
GROUP_A_MOVIES = range(1, 21)
GROUP_B_MOVIES = range(21, 41)
LOW_RATINGS_USER = 31  # rated two movies, both below the threshold
NOTHING_USER = 32  # no ratings, no favorites
MOVIES_PER_USER = 8


@dataclass
class TwoGroups:
    """What ``seed_two_groups`` inserted, for building expected values."""

    ratings: list[tuple[int, int, float]] = field(default_factory=list)

    def seen(self, user_id: int) -> set[int]:
        """Return the movies ``user_id`` rated, at any rating."""
        return {movie for user, movie, _ in self.ratings if user == user_id}

    @property
    def n_positive(self) -> int:
        """Number of ratings of 3 stars or more."""
        return sum(1 for _, _, rating in self.ratings if rating >= 3)


def seed_two_groups(engine: Engine, seed: int = 7) -> TwoGroups:
    """Insert 40 movies, 32 users and their ratings; return what was inserted."""
    rng = np.random.default_rng(seed)
    data = TwoGroups()
    for users, movies in (
        (GROUP_A_USERS, GROUP_A_MOVIES),
        (GROUP_B_USERS, GROUP_B_MOVIES),
    ):
        for user in users:
            chosen = rng.choice(list(movies), size=MOVIES_PER_USER, replace=False)
            for movie in sorted(chosen.tolist()):
                data.ratings.append((user, movie, float(rng.integers(4, 6))))
    data.ratings += [(LOW_RATINGS_USER, 1, 1.0), (LOW_RATINGS_USER, 21, 2.0)]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO movies (movie_id, title, genres) VALUES (:id, :title, '')"
            ),
            [{"id": m, "title": f"Movie {m} (2000)"} for m in range(1, 41)],
        )
        connection.execute(
            text("INSERT INTO users (user_id, name) VALUES (:id, NULL)"),
            [{"id": u} for u in range(1, NOTHING_USER + 1)],
        )
        connection.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) "
                "VALUES (:u, :m, :r, 978300760)"
            ),
            [{"u": u, "m": m, "r": r} for u, m, r in data.ratings],
        )
        if engine.dialect.name == "postgresql":
            # As ingest does: later inserts without an id get fresh ones.
            for table, column in (("users", "user_id"), ("movies", "movie_id")):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', "
                        f"'{column}'), (SELECT MAX({column}) FROM {table}))"
                    )
                )
    return data


def small_settings(url: str, **output: int) -> Settings:
    """Settings sized for the two-group data set; ``output`` overrides [output]."""
    values = {"n": 5, "similar_n": 4, "similar_min_support": 2, "keep_runs": 2}
    return Settings(
        database=DatabaseSettings(url=url),
        model=ModelSettings(factors=4, regularization=0.1, iterations=10),
        output=OutputSettings(**{**values, **output}),
    )


def published_rows(engine: Engine, view: str) -> list[tuple]:  # type: ignore[type-arg]
    """Return every row of a reader view, ordered by its key."""
    order = "user_id, rank" if view == "recommendations" else "movie_id, rank"
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(f"SELECT * FROM {view} ORDER BY {order}")
            )
        ]

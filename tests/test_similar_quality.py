"""Similar-movie lists on MovieLens 1M that people would recognise.

The module runs one ingest and one run-once with the shipped settings on
SQLite. It then checks the published ``similar_movies`` lists of ten
well-known movies. The listed movies must be widely rated, share a genre with
the query and come out around the same time. A few lists must contain titles
that viewers would expect, such as sequels.

``bench/similar.py`` measured each threshold on the shipped lists at
random_state 42, 7 and 2024, and on the lists of the common tutorial's
settings (factors=500, regularization=0.01, 15 iterations, no minimum
support). The tutorial's lists fail the rating and genre thresholds for
every query, and the year threshold for the queries from before 1980.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Connection, bindparam, text

from conftest import new_migrated_database
from db.engine import make_engine
from jobs.config import (
    DatabaseSettings,
    EvaluationSettings,
    OutputSettings,
    Settings,
)
from jobs.ingest import ingest
from jobs.run import run_once
from jobs.titles import split_year

pytestmark = [pytest.mark.movielens, pytest.mark.backends("sqlite")]

# Well-known movies across genres and decades, as MovieLens 1M writes them.
QUERIES = (
    "Jaws (1975)",
    "Star Wars: Episode IV - A New Hope (1977)",
    "Toy Story (1995)",
    "Godfather, The (1972)",
    "Pulp Fiction (1994)",
    "Silence of the Lambs, The (1991)",
    "Schindler's List (1993)",
    "Terminator 2: Judgment Day (1991)",
    "Groundhog Day (1993)",
    "Casablanca (1942)",
)

# Median ratings (at any star value) of a list's movies. Shipped lists
# measured 1,057 at the lowest, the tutorial's at most 12 and the whole
# catalogue 130. The threshold is half the shipped minimum, rounded down.
MIN_MEDIAN_RATINGS = 500

# A halved share would fall below the tutorial's own lists, so the margin of
# the shares is counted in titles. Changing random_state changed each share by
# at most one title, and each threshold is two titles below the worst shipped list.

# Share of the listed movies with a genre of the query. Shipped lists measured
# 13 of 15 at the lowest, the tutorial's at most 10 of 15 (0.67).
MIN_GENRE_SHARE = 0.7

# Share of the listed movies released at most MAX_YEARS_APART years from the
# query. Shipped lists measured 8 of 15 at the lowest (Casablanca). For the
# queries from before 1980, the tutorial's lists and the whole catalogue reach
# at most 5 of 15 (0.33).
MAX_YEARS_APART = 15
MIN_YEAR_SHARE = 0.4
# NOTE: most ml-1m movies are from the 1990s, so for the 1990s queries about
# 80 % of the catalogue is within 15 years and any list passes this threshold.

# Well-known horror, thriller and adventure films from 1960 to 1981, and Rocky.
# Every shipped Jaws list contained 6 or 7 of them, and the tutorial's none.
# The test requires half of the fewest.
JAWS_CLASSICS = frozenset(
    {
        "Alien (1979)",
        "Raiders of the Lost Ark (1981)",
        "Psycho (1960)",
        "Exorcist, The (1973)",
        "Birds, The (1963)",
        "Rocky (1976)",
        "Shining, The (1980)",
    }
)
MIN_JAWS_CLASSICS = 3

# Disney and Pixar animation. Every shipped Toy Story list contained all five,
# and the test requires more than half.
ANIMATION = frozenset(
    {
        "Toy Story 2 (1999)",
        "Bug's Life, A (1998)",
        "Aladdin (1992)",
        "Lion King, The (1994)",
        "Beauty and the Beast (1991)",
    }
)
MIN_ANIMATION = 3

# A sequel or prequel of each query, ranked between 1 and 5 in every shipped list.
SEQUELS = (
    ("Toy Story (1995)", "Toy Story 2 (1999)"),
    (
        "Star Wars: Episode IV - A New Hope (1977)",
        "Star Wars: Episode V - The Empire Strikes Back (1980)",
    ),
    (
        "Star Wars: Episode IV - A New Hope (1977)",
        "Star Wars: Episode VI - Return of the Jedi (1983)",
    ),
    ("Godfather, The (1972)", "Godfather: Part II, The (1974)"),
    ("Terminator 2: Judgment Day (1991)", "Terminator, The (1984)"),
)


@dataclass(frozen=True)
class ListedMovie:
    """A movie in a similar list, or a query, with what the checks measure."""

    title: str
    genres: frozenset[str]
    year: int
    # Ratings at any star value in the ratings table.
    n_ratings: int


@dataclass(frozen=True)
class SimilarList:
    """A query movie and its published similar movies, in rank order."""

    query: ListedMovie
    listed: list[ListedMovie]

    def describe(self) -> str:
        """Return one line per movie with its ratings and genres, for messages."""
        lines = [f"similar to {describe_movie(self.query)}:"]
        lines += [f"  {describe_movie(movie)}" for movie in self.listed]
        return "\n".join(lines)


def describe_movie(movie: ListedMovie) -> str:
    genres = "|".join(sorted(movie.genres))
    return f"{movie.title}, {movie.n_ratings} ratings, {genres}"


@pytest.fixture(scope="module")
def similar_lists(
    backend: str,
    movielens_dir: Path,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, SimilarList]:
    """Published similar lists of QUERIES after one run with the shipped settings."""
    url = new_migrated_database(backend, request, tmp_path_factory.mktemp("similar"))
    engine = make_engine(url)
    try:
        ingest(engine, movielens_dir / "ml-1m")
        # The lists do not depend on the holdout, which would double the fit.
        settings = Settings(
            database=DatabaseSettings(url=url),
            evaluation=EvaluationSettings(enabled=False),
        )
        run_once(engine, settings)
        with engine.connect() as connection:
            return read_similar_lists(connection, QUERIES)
    finally:
        engine.dispose()


def read_similar_lists(
    connection: Connection, titles: tuple[str, ...]
) -> dict[str, SimilarList]:
    """Read each query's published list, keyed by the query's title."""
    statement = text(
        "WITH counts AS ("
        "  SELECT movie_id, COUNT(*) AS n_ratings FROM ratings GROUP BY movie_id) "
        "SELECT q.title, m.title, m.genres, COALESCE(c.n_ratings, 0) "
        "FROM similar_movies AS s "
        "JOIN movies AS q ON q.movie_id = s.movie_id "
        "JOIN movies AS m ON m.movie_id = s.similar_movie_id "
        "LEFT JOIN counts AS c ON c.movie_id = s.similar_movie_id "
        "WHERE q.title IN :titles ORDER BY q.title, s.rank"
    ).bindparams(bindparam("titles", expanding=True))
    listed: dict[str, list[ListedMovie]] = defaultdict(list)
    for query_title, title, genres, n_ratings in connection.execute(
        statement, {"titles": list(titles)}
    ):
        listed[query_title].append(listed_movie(title, genres, n_ratings))

    queries = connection.execute(
        text(
            "SELECT m.title, m.genres, "
            "  (SELECT COUNT(*) FROM ratings AS r WHERE r.movie_id = m.movie_id) "
            "FROM movies AS m WHERE m.title IN :titles"
        ).bindparams(bindparam("titles", expanding=True)),
        {"titles": list(titles)},
    )
    return {
        title: SimilarList(listed_movie(title, genres, n), listed[title])
        for title, genres, n in queries
    }


def listed_movie(title: str, genres: str, n_ratings: int) -> ListedMovie:
    """Build a ListedMovie from a movies row, taking the year from the title."""
    year = split_year(title)[1]
    assert year is not None, f"movie title {title!r} has no year in brackets"
    return ListedMovie(
        title, frozenset(filter(None, genres.split("|"))), int(year), n_ratings
    )


def titles_of(similar: SimilarList) -> set[str]:
    return {movie.title for movie in similar.listed}


def test_every_query_found(similar_lists: dict[str, SimilarList]) -> None:
    assert sorted(similar_lists) == sorted(QUERIES)


@pytest.mark.parametrize("title", QUERIES)
def test_list_is_full(similar_lists: dict[str, SimilarList], title: str) -> None:
    similar = similar_lists[title]
    assert len(similar.listed) == OutputSettings().similar_n, similar.describe()


@pytest.mark.parametrize("title", QUERIES)
def test_listed_movies_widely_rated(
    similar_lists: dict[str, SimilarList], title: str
) -> None:
    similar = similar_lists[title]
    assert similar.listed, similar.describe()
    median = statistics.median(movie.n_ratings for movie in similar.listed)
    assert median >= MIN_MEDIAN_RATINGS, similar.describe()


@pytest.mark.parametrize("title", QUERIES)
def test_listed_movies_share_genre(
    similar_lists: dict[str, SimilarList], title: str
) -> None:
    similar = similar_lists[title]
    assert similar.listed, similar.describe()
    same_genre = [bool(movie.genres & similar.query.genres) for movie in similar.listed]
    assert sum(same_genre) / len(same_genre) >= MIN_GENRE_SHARE, similar.describe()


@pytest.mark.parametrize("title", QUERIES)
def test_listed_movies_same_era(
    similar_lists: dict[str, SimilarList], title: str
) -> None:
    similar = similar_lists[title]
    assert similar.listed, similar.describe()
    close = [
        abs(movie.year - similar.query.year) <= MAX_YEARS_APART
        for movie in similar.listed
    ]
    assert sum(close) / len(close) >= MIN_YEAR_SHARE, similar.describe()


def test_jaws_lists_classic_thrillers(similar_lists: dict[str, SimilarList]) -> None:
    similar = similar_lists["Jaws (1975)"]
    found = titles_of(similar) & JAWS_CLASSICS
    assert len(found) >= MIN_JAWS_CLASSICS, similar.describe()


def test_toy_story_lists_animation(similar_lists: dict[str, SimilarList]) -> None:
    similar = similar_lists["Toy Story (1995)"]
    found = titles_of(similar) & ANIMATION
    assert len(found) >= MIN_ANIMATION, similar.describe()


@pytest.mark.parametrize(("title", "sequel"), SEQUELS)
def test_sequel_in_list(
    similar_lists: dict[str, SimilarList], title: str, sequel: str
) -> None:
    similar = similar_lists[title]
    assert sequel in titles_of(similar), similar.describe()

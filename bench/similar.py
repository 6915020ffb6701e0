"""Compare similar-movie lists on MovieLens 1M: shipped settings against the tutorial's.

For each query movie the script fits ALS once per setting with the job's own
functions (``jobs.dataset.build_interactions``, ``jobs.model.fit_als`` and
``jobs.model.similar_items``, with the candidates that ``jobs run-once``
uses) and prints both lists side by side, each title with its number of
ratings. A table then gives, per query and setting:

- median ratings: the median number of ratings in ratings.dat (at any star
  value) of the listed movies;
- same genre: the share of listed movies with at least one genre of the query;
- within N years: the share of listed movies whose title year is at most
  ``--years`` years before or after the query's.

The shipped setting is the code default of ``ModelSettings`` and
``OutputSettings``, which ``config.toml`` repeats. The tutorial setting is the
common MovieLens tutorial's: factors=500, regularization=0.01, alpha=1,
15 iterations, and every movie with a positive is a candidate. Both fit
``jobs.dataset``'s matrix, where a rating of 3 stars or more is a positive
with its star value as confidence.

    python bench/similar.py --movielens-dir $MOVIELENS_DIR/ml-1m
    python bench/similar.py --random-state 42 --random-state 7 --summary-only
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs import dataset, model
from jobs.config import ModelSettings, OutputSettings
from jobs.errors import DataError
from jobs.movielens import MovieLensData, read_movielens
from jobs.titles import Movie, TitleIndex, split_year

log = logging.getLogger("bench.similar")

# Well-known movies across genres and decades, as MovieLens 1M writes them.
DEFAULT_QUERIES = (
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
# Most ml-1m movies are from the 1990s, so 15 years around a 1990s query contain
# about 80 % of the catalogue, and around the queries from before 1980 at most a
# third. Before 1980, the worst shipped list has 8 of 15 movies within 15 years
# and the best tutorial list 5. Windows of 10, 5 and 20 years give 6 and 3,
# 4 and 2, and 11 and 10.
DEFAULT_YEARS = 15
# Characters of a title shown in the side-by-side lists.
TITLE_WIDTH = 44


class BenchError(Exception):
    """Input that the benchmark cannot use: a missing folder or unknown title."""


@dataclass(frozen=True)
class ListSetting:
    """ALS settings and the support a movie needs to be listed or queried."""

    label: str
    factors: int
    regularization: float
    alpha: float
    iterations: int
    # Positives a movie needs to get a similar list and to appear in one.
    min_support: int


def shipped_setting() -> ListSetting:
    """Return the job's default settings."""
    model_settings = ModelSettings()
    return ListSetting(
        label="shipped",
        factors=model_settings.factors,
        regularization=model_settings.regularization,
        alpha=model_settings.alpha,
        iterations=model_settings.iterations,
        min_support=OutputSettings().similar_min_support,
    )


# The tutorial leaves alpha unset, which is 1.0 in implicit 0.7.3. Every movie
# in the matrix has at least one positive, so a min_support of 1 is no minimum.
TUTORIAL = ListSetting(
    label="tutorial",
    factors=500,
    regularization=0.01,
    alpha=1.0,
    iterations=15,
    min_support=1,
)


@dataclass(frozen=True)
class Catalogue:
    """Titles, genres, years and rating counts of the movies, keyed by ``movie_id``."""

    titles: dict[int, str]
    genres: dict[int, frozenset[str]]
    # The year in brackets at the end of the title, as in "Jaws (1975)".
    years: dict[int, int]
    # Ratings at any star value, and 0 for an unrated movie.
    n_ratings: dict[int, int]


@dataclass(frozen=True)
class ListQuality:
    """The three measures of one similar list."""

    median_ratings: float
    genre_share: float
    year_share: float


def resolve_movielens_dir(movielens_dir: Path | None) -> Path:
    """Return the ml-1m folder from ``--movielens-dir`` or ``MOVIELENS_DIR``/ml-1m.

    Raises:
        BenchError: neither is set, or the folder has no ratings.dat.
    """
    if movielens_dir is not None:
        folder = movielens_dir
    elif os.environ.get("MOVIELENS_DIR"):
        folder = Path(os.environ["MOVIELENS_DIR"]) / "ml-1m"
    else:
        raise BenchError(
            "MovieLens folder not set: pass --movielens-dir DIR or set "
            "MOVIELENS_DIR to the folder that contains ml-1m/"
        )
    if not (folder / "ratings.dat").is_file():
        raise BenchError(
            f"{folder / 'ratings.dat'} not found: pass the ml-1m folder with "
            "--movielens-dir"
        )
    return folder


def build_catalogue(data: MovieLensData) -> Catalogue:
    """Collect the title, genres, year and rating count of each ``movie_id``.

    Raises:
        BenchError: a title has no year in brackets.
    """
    movie_ids = data.movies["movie_id"].tolist()
    titles = dict(zip(movie_ids, data.movies["title"].tolist(), strict=True))
    years = {}
    for movie_id, title in titles.items():
        year = split_year(title)[1]
        if year is None:
            raise BenchError(f"movie title {title!r} has no year in brackets")
        years[movie_id] = int(year)

    genre_texts = dict(zip(movie_ids, data.movies["genres"].tolist(), strict=True))
    counts = data.ratings["movie_id"].value_counts()
    return Catalogue(
        titles=titles,
        genres={
            movie_id: frozenset(filter(None, text.split("|")))
            for movie_id, text in genre_texts.items()
        },
        years=years,
        n_ratings={movie_id: int(counts.get(movie_id, 0)) for movie_id in movie_ids},
    )


def build_snapshot(data: MovieLensData) -> dataset.Snapshot:
    """Turn the files into the snapshot that ``jobs run-once`` reads after ingest."""
    ratings = data.ratings
    no_favorites = np.empty(0, dtype=np.int64)
    return dataset.Snapshot(
        user_ids=np.unique(ratings["user_id"].to_numpy(np.int64)),
        catalogue_ids=np.sort(data.movies["movie_id"].to_numpy(np.int64)),
        rating_user_ids=ratings["user_id"].to_numpy(np.int64),
        rating_movie_ids=ratings["movie_id"].to_numpy(np.int64),
        ratings=ratings["rating"].to_numpy(np.float32),
        favorite_user_ids=no_favorites,
        favorite_movie_ids=no_favorites,
    )


def resolve_queries(titles: Sequence[str], catalogue: Catalogue) -> list[int]:
    """Return the ``movie_id`` of each title, matched as ``jobs similar`` matches.

    Raises:
        BenchError: a title is unknown or ambiguous.
    """
    index = TitleIndex(
        Movie(movie_id, title) for movie_id, title in catalogue.titles.items()
    )
    try:
        return [index.resolve(title).movie_id for title in titles]
    except DataError as exc:
        raise BenchError(str(exc)) from exc


def similar_lists(
    interactions: dataset.Interactions,
    setting: ListSetting,
    query_ids: Sequence[int],
    n: int,
    random_state: int,
) -> dict[int, list[int]]:
    """Fit ALS with ``setting`` and return the similar ``movie_id`` list per query.

    A query with fewer than ``setting.min_support`` positives gets an empty
    list, as ``jobs run-once`` gives it none.
    """
    started = time.perf_counter()
    als = model.fit_als(
        interactions.user_items,
        factors=setting.factors,
        regularization=setting.regularization,
        alpha=setting.alpha,
        iterations=setting.iterations,
        random_state=random_state,
    )
    log.info(
        "fitted %s (random_state %d) in %.1f s",
        setting.label,
        random_state,
        time.perf_counter() - started,
    )

    # The candidates of jobs run-once: movies with enough positives.
    support = interactions.item_support()
    eligible = np.flatnonzero(support >= setting.min_support).astype(np.int64)
    query_idx = np.searchsorted(interactions.movie_ids, np.asarray(query_ids))
    listed = query_idx[np.isin(query_idx, eligible)]
    batch = model.similar_items(als, listed, eligible, n)

    lists: dict[int, list[int]] = {movie_id: [] for movie_id in query_ids}
    for row, item in enumerate(batch.rows):
        ids = batch.ids[row][batch.valid[row]]
        lists[int(interactions.movie_ids[item])] = [
            int(movie_id) for movie_id in interactions.movie_ids[ids]
        ]
    return lists


def measure_list(
    query_id: int, listed_ids: Sequence[int], catalogue: Catalogue, years: int
) -> ListQuality:
    """Compute the three measures of one list; an empty list measures all zeros."""
    if not listed_ids:
        return ListQuality(0.0, 0.0, 0.0)
    query_genres = catalogue.genres[query_id]
    query_year = catalogue.years[query_id]
    same_genre = [bool(catalogue.genres[m] & query_genres) for m in listed_ids]
    close_year = [abs(catalogue.years[m] - query_year) <= years for m in listed_ids]
    return ListQuality(
        median_ratings=float(
            statistics.median(catalogue.n_ratings[m] for m in listed_ids)
        ),
        genre_share=sum(same_genre) / len(listed_ids),
        year_share=sum(close_year) / len(listed_ids),
    )


def format_lists(
    query_id: int,
    by_setting: dict[str, list[int]],
    catalogue: Catalogue,
) -> str:
    """Format one query's lists in columns, each title with its rating count."""
    labels = list(by_setting)
    query = catalogue.titles[query_id]
    lines = [f"## {query} ({catalogue.n_ratings[query_id]} ratings)"]
    header = " ".join(f"{label:<{TITLE_WIDTH + 8}}" for label in labels)
    lines.append(f"rank {header}".rstrip())
    length = max(len(listed) for listed in by_setting.values())
    for rank in range(length):
        cells = []
        for label in labels:
            listed = by_setting[label]
            if rank < len(listed):
                movie_id = listed[rank]
                title = catalogue.titles[movie_id][:TITLE_WIDTH]
                cells.append(
                    f"{title:<{TITLE_WIDTH}} {catalogue.n_ratings[movie_id]:>7}"
                )
            else:
                cells.append(" " * (TITLE_WIDTH + 8))
        lines.append(f"{rank + 1:>4} " + " ".join(cells).rstrip())
    return "\n".join(lines)


def format_summary(
    qualities: dict[int, dict[str, ListQuality]],
    catalogue: Catalogue,
    years: int,
) -> str:
    """Format the measures as a markdown table, the settings side by side."""
    labels = list(next(iter(qualities.values())))
    header = ["query"]
    for name in ("median ratings", "same genre", f"within {years} years"):
        header += [f"{name} ({label})" for label in labels]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for query_id, by_label in qualities.items():
        cells = [catalogue.titles[query_id]]
        cells += [f"{by_label[label].median_ratings:g}" for label in labels]
        cells += [f"{by_label[label].genre_share:.2f}" for label in labels]
        cells += [f"{by_label[label].year_share:.2f}" for label in labels]
        lines.append("| " + " | ".join(cells) + " |")

    # The minimum over queries is what a per-query threshold has to stay below.
    cells = ["minimum over queries"]
    for field in ("median_ratings", "genre_share", "year_share"):
        for label in labels:
            value = min(
                getattr(by_label[label], field) for by_label in qualities.values()
            )
            cells.append(f"{value:g}" if field == "median_ratings" else f"{value:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_lists(
    lists: dict[str, dict[int, list[int]]],
    candidates: Sequence[int],
    catalogue: Catalogue,
    years: int,
) -> dict[int, dict[str, ListQuality]]:
    """Measure each query's list per setting, and chance level as ``"chance"``.

    Chance level is measured on a "list" of every candidate movie except the
    query, so it is about what a list drawn at random scores.
    """
    qualities: dict[int, dict[str, ListQuality]] = {}
    for query_id in next(iter(lists.values())):
        by_label = {
            label: measure_list(query_id, by_query[query_id], catalogue, years)
            for label, by_query in lists.items()
        }
        others = [movie_id for movie_id in candidates if movie_id != query_id]
        by_label["chance"] = measure_list(query_id, others, catalogue, years)
        qualities[query_id] = by_label
    return qualities


def run_benchmark(args: argparse.Namespace) -> None:
    """Load ml-1m, fit each setting per random state and print lists and measures."""
    folder = resolve_movielens_dir(args.movielens_dir)
    data = read_movielens(folder)
    catalogue = build_catalogue(data)
    query_ids = resolve_queries(args.query or DEFAULT_QUERIES, catalogue)
    model_settings = ModelSettings()
    interactions = dataset.build_interactions(
        build_snapshot(data), model_settings.min_rating, model_settings.favorite_weight
    )
    # Every movie with a positive, which the tutorial setting lists from.
    candidates = [int(movie_id) for movie_id in interactions.movie_ids]

    for random_state in args.random_state or [model_settings.random_state]:
        lists = {
            setting.label: similar_lists(
                interactions, setting, query_ids, args.n, random_state
            )
            for setting in (shipped_setting(), TUTORIAL)
        }
        print(f"# random_state {random_state}\n")
        if not args.summary_only:
            for query_id in query_ids:
                by_setting = {label: lists[label][query_id] for label in lists}
                print(format_lists(query_id, by_setting, catalogue), end="\n\n")
        qualities = measure_lists(lists, candidates, catalogue, args.years)
        print(format_summary(qualities, catalogue, args.years), end="\n\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Print similar-movie lists of well-known MovieLens 1M movies "
        "and their median rating count, genre overlap and release-year closeness, "
        "with the shipped ALS settings and with the tutorial's.",
    )
    parser.add_argument(
        "--movielens-dir",
        type=Path,
        help="the ml-1m folder, with movies.dat and ratings.dat "
        "(default: $MOVIELENS_DIR/ml-1m)",
    )
    parser.add_argument(
        "--query",
        action="append",
        metavar="TITLE",
        help="a query movie's title, such as 'Jaws (1975)' (repeatable; default: "
        "ten well-known movies across genres)",
    )
    parser.add_argument(
        "--random-state",
        type=int,
        action="append",
        help="random_state of the ALS fits (repeatable, one pass each; "
        f"default: {ModelSettings().random_state})",
    )
    parser.add_argument(
        "-n",
        type=int,
        default=OutputSettings().similar_n,
        help=f"similar movies per query (default: {OutputSettings().similar_n})",
    )
    parser.add_argument(
        "--years",
        type=int,
        default=DEFAULT_YEARS,
        help="a listed movie counts as close in time when its year is at most this "
        f"many years from the query's (default: {DEFAULT_YEARS})",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="print only the table of measures, not the lists",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1, got {args.n}")
    if args.years < 0:
        parser.error(f"--years must be at least 0, got {args.years}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run_benchmark(args)
    except (BenchError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

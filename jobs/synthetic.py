"""Generate synthetic ratings in the MovieLens 1M file layout.

The demo falls back on this data when the real MovieLens files are not
available, and the scale benchmarks use it at sizes that MovieLens 1M does not
reach. Users, ratings and titles are invented. Only the file layout, the genre
names and a few rough shares (such as star and genre shares) follow MovieLens.

The generative model:

* ``N_TOPICS`` latent topics each favour a few genres. A movie has one main
  topic, draws 1-4 genres from it and gives the rest of its topic weight to
  topics that favour the same genres. A user has a sparse Dirichlet mixture
  of topics.
* User u picks movie j, without replacement, with probability proportional
  to ``popularity[j] * affinity[u, j]``. The affinity mixes the user's topic
  weights with the movie's, plus a small share that follows popularity alone.
* The star rating cuts a noisy score (movie quality + user bias + topic
  affinity) into 1-5 stars at fixed shares close to MovieLens 1M's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)

# The 18 genre names of MovieLens 1M, in the order its README lists them.
GENRES = tuple(
    "Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western".split()
)
# Rough share of each genre among all genre labels of MovieLens 1M, in percent.
GENRE_SHARES = (
    8,
    4.5,
    1.7,
    4,
    19,
    3.3,
    2,
    25,
    1.1,
    0.7,
    5.4,
    1.8,
    1.7,
    7.4,
    4.3,
    7.7,
    2.2,
    1.1,
)
# Share of movies with 1, 2, 3 and 4 genres.
GENRE_COUNT_SHARES = (0.52, 0.34, 0.11, 0.03)

# Real titles that the demo refers to by name. They get ids 1..7, high
# popularity and high quality, so that the demo's output looks sensible.
DEMO_MOVIES = (
    ("Toy Story (1995)", "Animation|Children's|Comedy"),
    ("Back to the Future (1985)", "Comedy|Sci-Fi"),
    ("Terminator, The (1984)", "Action|Sci-Fi|Thriller"),
    ("Men in Black (1997)", "Action|Adventure|Comedy|Sci-Fi"),
    ("Jurassic Park (1993)", "Action|Adventure|Sci-Fi"),
    ("Jaws (1975)", "Action|Horror"),
    ("Misérables, Les (1995)", "Drama|Musical"),
)
# The demo movies' quality is this quantile of all movies' quality.
DEMO_QUALITY_QUANTILE = 0.95

# Share of ratings with 1, 2, 3, 4 and 5 stars, about MovieLens 1M's shares.
STAR_SHARES = (0.06, 0.11, 0.26, 0.35, 0.22)
MIN_RATINGS_PER_USER = 20
# No user rates more than this share of the catalogue (MovieLens 1M: 62 %).
MAX_USER_SHARE = 0.5
# Log-normal sigma of each user's ratings above MIN_RATINGS_PER_USER.
ACTIVITY_SIGMA = 1.15

# Latent taste. The values below were tuned by hand so that at 1M ratings the
# popularity curve, genre loyalty and the gap between a popularity baseline
# and matrix factorisation come near MovieLens 1M's.
N_TOPICS = 16
# Dirichlet concentrations of topic genres and of user topics. Below 1, most
# of the weight goes to a few entries.
TOPIC_GENRE_CONCENTRATION = 1.5
USER_TOPIC_CONCENTRATION = 0.1
# Share of a movie's topic weight on its main topic.
MOVIE_TOPIC_PURITY = 0.8
# Share of each user's picks that follow popularity alone.
POPULAR_SHARE = 0.1
# log(popularity) is a two-piece normal with these sigmas, capped at
# POPULARITY_MAX_Z standard normal units.
POPULARITY_SIGMA_UPPER = 1.6
POPULARITY_SIGMA_LOWER = 2.6
POPULARITY_MAX_Z = 2.8

# Weights of the terms of the rating score; see _draw_stars.
QUALITY_WEIGHT = 1.0
BIAS_WEIGHT = 0.6
AFFINITY_WEIGHT = 0.2
NOISE_WEIGHT = 0.8

# Rounds of draws with replacement before the exact per-user draw.
MAX_DRAW_ROUNDS = 6
# Rows per block in the vectorised steps; bounds their temporary memory.
CHUNK_ROWS = 1 << 20

# users.dat: share of gender M, age bands (lower bound of each band, as
# MovieLens 1M codes them) and their rough shares.
MALE_SHARE = 0.72
AGE_BANDS = (1, 18, 25, 35, 45, 50, 56)
AGE_BAND_SHARES = (0.04, 0.18, 0.35, 0.20, 0.09, 0.08, 0.06)

# Timestamps: users join during 2000 and rate over 10 minutes to 3 years.
JOIN_START = 946_684_800  # 2000-01-01T00:00:00Z
JOIN_WINDOW_S = 366 * 86_400
MIN_SPAN_S = 600
MAX_SPAN_S = 3 * 365 * 86_400


@dataclass(frozen=True)
class _Movies:
    """Hidden and visible attributes of ``n_movies`` movies, indexed by item_idx."""

    titles: list[str]
    genres: list[str]  # pipe-separated genre names
    topics: np.ndarray  # (n_movies, N_TOPICS) float64, rows sum to 1
    popularity: np.ndarray  # (n_movies,) float64, positive
    quality: np.ndarray  # (n_movies,) float64, in rating-score units


@dataclass(frozen=True)
class _Users:
    """Hidden and visible attributes of ``n_users`` users, indexed by user_idx."""

    counts: np.ndarray  # (n_users,) int64, ratings per user
    topics: np.ndarray  # (n_users, N_TOPICS) float64, rows sum to 1
    bias: np.ndarray  # (n_users,) float64, in rating-score units


def default_sizes(n_ratings: int) -> tuple[int, int]:
    """Scale the number of users and movies from the number of ratings.

    From 1M ratings up, a power law runs through the sizes of MovieLens 1M
    (6,040 users, 3,700 movies) and MovieLens 20M (138,000 users, 27,000
    movies). Below 1M, users shrink faster than movies, and there are at most
    ``n_ratings / (2 * MIN_RATINGS_PER_USER)`` users, so that the per-user
    minimum still leaves room for a long tail.

    Returns:
        ``(n_users, n_movies)``.
    """
    scale = n_ratings / 1_000_000
    if scale >= 1:
        # The exponents join the two sizes across the factor of 20 in ratings,
        # for example 1.044 = log(138_000 / 6_040) / log(20).
        n_users = 6_040 * scale**1.044
        n_movies = 3_700 * scale**0.663
    else:
        n_users = 6_040 * scale**0.7
        n_movies = 3_700 * scale**0.5
    n_users = min(n_users, n_ratings / (2 * MIN_RATINGS_PER_USER))
    return max(1, round(n_users)), max(len(DEMO_MOVIES), round(n_movies))


def write_synthetic_movielens(
    dest: Path,
    *,
    n_ratings: int = 1_000_000,
    n_users: int | None = None,
    n_movies: int | None = None,
    seed: int = 42,
) -> Path:
    """Write a synthetic data set in the MovieLens 1M layout into ``dest``.

    Creates ``dest`` if needed and writes ``movies.dat`` (ISO-8859-1),
    ``ratings.dat``, ``users.dat`` and a ``README``, replacing files of those
    names. Equal arguments give identical files under the same NumPy
    version; another version may change the random streams.

    Args:
        dest: Folder to write into.
        n_ratings: Exact number of lines in ``ratings.dat``.
        n_users: Number of users, ids 1..n_users; every one rates at least
            ``MIN_RATINGS_PER_USER`` movies. ``None`` scales it with
            ``default_sizes``.
        n_movies: Number of movies, ids 1..n_movies; some may have no
            ratings. ``None`` scales it with ``default_sizes``.
        seed: Seed of the random generator.

    Returns:
        ``dest``.

    Raises:
        ValueError: If the sizes cannot be met, for example fewer than
            ``MIN_RATINGS_PER_USER`` ratings per user.
    """
    dest = Path(dest)
    default_users, default_movies = default_sizes(n_ratings)
    n_users = default_users if n_users is None else n_users
    n_movies = default_movies if n_movies is None else n_movies
    _check_sizes(n_ratings, n_users, n_movies)

    started = time.perf_counter()
    log.info(
        "generating %d ratings by %d users on %d movies, seed %d",
        n_ratings,
        n_users,
        n_movies,
        seed,
    )
    rng = np.random.default_rng(seed)
    movies = _draw_movies(rng, n_movies)
    users = _draw_users(rng, n_users, n_ratings, n_movies)
    user_idx, item_idx = _draw_pairs(rng, users, movies)
    stars = _draw_stars(rng, user_idx, item_idx, users, movies)
    timestamps = _draw_timestamps(rng, user_idx, n_users)
    log.info("drew %d ratings in %.1f s", len(stars), time.perf_counter() - started)

    started = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    _write_movies(dest / "movies.dat", movies)
    _write_users(dest / "users.dat", rng, n_users)
    _write_ratings(dest / "ratings.dat", user_idx, item_idx, stars, timestamps)
    _write_readme(dest / "README", n_ratings, n_users, n_movies, seed)
    log.info("wrote %s in %.1f s", dest, time.perf_counter() - started)
    return dest


def _check_sizes(n_ratings: int, n_users: int, n_movies: int) -> None:
    """Raise ValueError unless the sizes allow a data set with the required shape."""
    n_demo = len(DEMO_MOVIES)
    if n_users < 1:
        raise ValueError(f"n_users={n_users} is invalid: it must be at least 1")
    if n_movies < n_demo:
        raise ValueError(
            f"n_movies={n_movies} is invalid: it must be at least {n_demo}, "
            "the number of demo titles"
        )
    if n_movies > _title_capacity():
        raise ValueError(
            f"n_movies={n_movies} is invalid: at most {_title_capacity()} "
            "distinct titles can be invented"
        )
    if n_ratings < MIN_RATINGS_PER_USER * n_users:
        raise ValueError(
            f"n_ratings={n_ratings} is too small for n_users={n_users}: every "
            f"user needs {MIN_RATINGS_PER_USER} ratings; raise n_ratings or "
            "lower n_users"
        )
    max_per_user = _max_ratings_per_user(n_movies)
    if max_per_user < MIN_RATINGS_PER_USER:
        raise ValueError(
            f"n_movies={n_movies} is too small: a user rates at most "
            f"{MAX_USER_SHARE:.0%} of the movies, which must be at least "
            f"{MIN_RATINGS_PER_USER}; raise n_movies"
        )
    if n_ratings > max_per_user * n_users:
        raise ValueError(
            f"n_ratings={n_ratings} is too large for n_users={n_users} and "
            f"n_movies={n_movies}: a user rates at most {max_per_user} movies; "
            "raise n_users or n_movies"
        )


def _max_ratings_per_user(n_movies: int) -> int:
    return int(MAX_USER_SHARE * n_movies)


# --- Movies -----------------------------------------------------------------


def _draw_movies(rng: np.random.Generator, n_movies: int) -> _Movies:
    """Draw titles, genres, topic mixtures, popularity and quality of movies.

    The demo movies take item_idx 0..6, popularity ranks in the top few
    percent and the ``DEMO_QUALITY_QUANTILE`` of quality.
    """
    n_demo = len(DEMO_MOVIES)
    genre_probs = _draw_topic_genres(rng)

    # Every movie has a main topic and draws its genres from it. The demo
    # movies have fixed genres, so they take the topic most likely to yield
    # them.
    main_topic = rng.integers(0, N_TOPICS, n_movies)
    member = _draw_genres(rng, genre_probs[main_topic])
    for i, (_, names) in enumerate(DEMO_MOVIES):
        member[i] = [genre in names.split("|") for genre in GENRES]
        main_topic[i] = np.argmax(np.log(genre_probs[:, member[i]]).sum(axis=1))

    # The rest of a movie's topic weight goes to topics that favour its
    # genres, so that movies also share taste across topics.
    genre_mix = member @ genre_probs.T
    genre_mix /= genre_mix.sum(axis=1, keepdims=True)
    topics = (1 - MOVIE_TOPIC_PURITY) * genre_mix
    topics[np.arange(n_movies), main_topic] += MOVIE_TOPIC_PURITY

    # Long-tailed popularity. The lower half of log-popularity is wider, for
    # the many rarely rated movies that MovieLens has. Capping the upper half
    # at POPULARITY_MAX_Z keeps the top movies near half of all users, as in
    # MovieLens, instead of nearly all of them.
    z = rng.standard_normal(n_movies)
    upper = POPULARITY_SIGMA_UPPER * np.minimum(z, POPULARITY_MAX_Z)
    log_pop = np.where(z > 0, upper, POPULARITY_SIGMA_LOWER * z)
    log_pop = np.sort(log_pop)[::-1]

    # The demo movies take spread-out ranks in the top few percent; the other
    # movies take the remaining ranks in random order.
    demo_ranks = np.arange(n_demo) * max(1, n_movies // 200)
    other_ranks = np.setdiff1d(np.arange(n_movies), demo_ranks)
    idx_by_rank = np.empty(n_movies, dtype=np.int64)
    idx_by_rank[demo_ranks] = np.arange(n_demo)
    idx_by_rank[other_ranks] = n_demo + rng.permutation(n_movies - n_demo)
    log_pop[idx_by_rank] = log_pop.copy()
    popularity = np.exp(log_pop)

    # Quality has correlation 0.5 with log-popularity, because in MovieLens
    # the most rated movies also get the highest mean ratings.
    quality = 0.5 * (log_pop - log_pop.mean()) / log_pop.std()
    quality += np.sqrt(1 - 0.5**2) * rng.standard_normal(n_movies)
    quality[:n_demo] = np.quantile(quality, DEMO_QUALITY_QUANTILE)

    titles = [title for title, _ in DEMO_MOVIES]
    titles += _invent_titles(rng, n_movies - n_demo)
    genres = ["|".join(np.asarray(GENRES)[row]) for row in member]
    return _Movies(titles, genres, topics, popularity, quality)


def _draw_topic_genres(rng: np.random.Generator) -> np.ndarray:
    """Draw each topic's genre distribution, shape (N_TOPICS, len(GENRES)).

    A sparse Dirichlet gives each topic a few dominant genres, so a topic
    reads like a genre or a blend of genres. Mixing in ``GENRE_SHARES``
    keeps every genre possible and the overall genre shares near MovieLens'.
    """
    shares = np.asarray(GENRE_SHARES) / sum(GENRE_SHARES)
    dominant = rng.dirichlet(TOPIC_GENRE_CONCENTRATION * shares, N_TOPICS)
    return 0.8 * dominant + 0.2 * shares


def _draw_genres(rng: np.random.Generator, genre_probs: np.ndarray) -> np.ndarray:
    """Draw 1-4 distinct genres per row of ``genre_probs`` (n, len(GENRES)).

    Returns:
        Genre membership, shape (n, len(GENRES)), bool.
    """
    n_movies = len(genre_probs)
    n_genres = 1 + rng.choice(len(GENRE_COUNT_SHARES), n_movies, p=GENRE_COUNT_SHARES)

    # Gumbel top-k: the k largest of log(p) + Gumbel noise are a sample of k
    # genres without replacement, weighted by p.
    keys = np.log(genre_probs) + rng.gumbel(size=genre_probs.shape)
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return ranks < n_genres[:, None]


# Invented title words. Patterns combine them into names such as
# "Silent Harbor", "Harbor of Lisbon, The" or "Lantern and Orchard".
_ADJECTIVES = """
Amber Ashen Bitter Blind Blue Brave Broken Burning Cold Crimson Crooked Dark
Distant Dusty Electric Empty Endless Fallen Final Forgotten Frozen Gentle
Gilded Golden Grand Green Hidden Hollow Iron Last Little Lonely Lost Midnight
Narrow Painted Pale Quiet Restless Rusty Savage Scarlet Secret Silent Silver
Sleeping Small Stolen Strange Sudden Sweet Tender Thin Velvet Wandering Wicked
Wild Winter Wooden Young
""".split()
_NOUNS = """
Affair Alibi Anchor Angel Archive Arrow Avenue Ballad Bandit Banquet Bargain
Bell Bridge Brother Café Canyon Captain Carnival Castle Cellar Circus Clock
Coast Compass Corridor Cousin Crown Dancer Daughter Debt Desert Diary Drifter
Drum Echo Engine Exile Fever Fiancée Frontier Garden Ghost Harbor Harvest
Heir Highway Horizon Hunter Island Jewel Journey Judge Kingdom Ladder Lantern
Legacy Letter Lighthouse Machine Mirror Mission Monsoon Mountain Niño Orchard
Outlaw Parade Passenger Pilgrim Prophet Puzzle Quarry Railroad Ransom River
Rumor Saint Señor Sheriff Signal Sister Sparrow Stranger Summer Swindle Tailor
Tempest Tide Tower Traveler Tunnel Valley Voyage Waltz Widow Witness Wolf
""".split()
_PLACES = """
Alexandria Bogotá Bombay Brooklyn Cairo Casablanca Dakota Dublin Galveston
Havana Istanbul Kingston Köln Lisbon Málaga Manhattan Marseille Montréal
Nevada Oslo Palermo Prague Reno Saigon Salem Siberia Tangier Texas Toledo
Vienna Yukon Zürich
""".split()


def _title_patterns() -> list[tuple[float, int]]:
    """Return (weight, number of distinct names) of each title pattern."""
    n_adj, n_noun, n_place = len(_ADJECTIVES), len(_NOUNS), len(_PLACES)
    return [
        (0.30, n_adj * n_noun),  # Silent Harbor
        (0.15, n_adj * n_noun),  # Silent Harbor, The
        (0.15, n_noun * n_place),  # Harbor of Lisbon
        (0.10, n_noun * n_place),  # Harbor of Lisbon, The
        (0.10, n_noun * (n_noun - 1)),  # Harbor and Lantern
        (0.20, n_adj * n_noun * n_place),  # Silent Harbor of Lisbon
    ]


def _title_capacity() -> int:
    return len(DEMO_MOVIES) + sum(size for _, size in _title_patterns())


def _invent_titles(rng: np.random.Generator, n: int) -> list[str]:
    """Invent ``n`` distinct titles shaped like ``Silent Harbor, The (1987)``."""
    patterns = _title_patterns()
    counts = rng.multinomial(n, [weight for weight, _ in patterns])

    # A pattern with fewer names than its share passes the rest to the last,
    # largest pattern.
    for i, (_, size) in enumerate(patterns[:-1]):
        overflow = max(0, counts[i] - size)
        counts[i] -= overflow
        counts[-1] += overflow

    # Release years skew recent, like MovieLens: median about 1994.
    years = 2000 - np.floor(rng.lognormal(np.log(6.5), 1.5, n)).astype(int)
    years = np.maximum(years, 1919)

    names: list[str] = []
    for pattern, ((_, size), count) in enumerate(zip(patterns, counts, strict=True)):
        indices = rng.choice(size, count, replace=False)
        names += [_format_name(pattern, int(index)) for index in indices]
    order = rng.permutation(n)
    return [f"{names[i]} ({year})" for i, year in zip(order, years, strict=True)]


def _format_name(pattern: int, index: int) -> str:
    """Return name ``index`` of title ``pattern``, with MovieLens' trailing "The"."""
    n_noun, n_place = len(_NOUNS), len(_PLACES)
    if pattern in (0, 1):
        adjective, noun = divmod(index, n_noun)
        name = f"{_ADJECTIVES[adjective]} {_NOUNS[noun]}"
    elif pattern in (2, 3):
        noun, place = divmod(index, n_place)
        name = f"{_NOUNS[noun]} of {_PLACES[place]}"
    elif pattern == 4:
        # The second noun skips the first, so a name never repeats a noun.
        first, offset = divmod(index, n_noun - 1)
        second = (first + 1 + offset) % n_noun
        name = f"{_NOUNS[first]} and {_NOUNS[second]}"
    else:
        adjective, rest = divmod(index, n_noun * n_place)
        noun, place = divmod(rest, n_place)
        name = f"{_ADJECTIVES[adjective]} {_NOUNS[noun]} of {_PLACES[place]}"
    return f"{name}, The" if pattern in (1, 3) else name


# --- Users and their ratings ------------------------------------------------


def _draw_users(
    rng: np.random.Generator, n_users: int, n_ratings: int, n_movies: int
) -> _Users:
    counts = _draw_counts(rng, n_users, n_ratings, _max_ratings_per_user(n_movies))
    topics = rng.dirichlet(np.full(N_TOPICS, USER_TOPIC_CONCENTRATION), n_users)
    bias = rng.standard_normal(n_users)
    return _Users(counts, topics, bias)


def _draw_counts(
    rng: np.random.Generator, n_users: int, n_ratings: int, max_per_user: int
) -> np.ndarray:
    """Split ``n_ratings`` among users: at least the minimum each, a long tail.

    Each user gets ``MIN_RATINGS_PER_USER`` plus a share of the rest in
    proportion to a log-normal weight. Shares over ``max_per_user`` are cut
    and the excess goes to the other users (water filling).

    Returns:
        Ratings per user, shape (n_users,), int64, summing to ``n_ratings``.
    """
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    extra_total = n_ratings - MIN_RATINGS_PER_USER * n_users
    cap = max_per_user - MIN_RATINGS_PER_USER

    extra = np.zeros(n_users)
    capped = np.zeros(n_users, dtype=bool)
    while not capped.all():
        left = extra_total - cap * capped.sum()
        extra[~capped] = left * weights[~capped] / weights[~capped].sum()
        over = extra > cap
        if not over.any():
            break
        extra[over] = cap
        capped |= over

    # Round down, then hand the remaining units to the largest remainders.
    counts = np.floor(extra).astype(np.int64)
    remainders = np.where(counts < cap, extra - counts, -1.0)
    short = extra_total - int(counts.sum())
    counts[np.argsort(-remainders, kind="stable")[:short]] += 1
    return counts + MIN_RATINGS_PER_USER


def _draw_pairs(
    rng: np.random.Generator, users: _Users, movies: _Movies
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``users.counts[u]`` distinct movies for every user u.

    User u picks movie j with probability proportional to
    ``component_weights[u] @ item_probs[:, j]``: a mixture of the user's
    topics and of plain popularity. Keeping the first distinct draws in draw
    order is sampling without replacement, so rounds of cheap draws with
    replacement do most of the work. Users still short after
    ``MAX_DRAW_ROUNDS`` (heavy users whose likely movies are used up) get
    their remaining movies from an exact per-row sample.

    Returns:
        ``(user_idx, item_idx)``, each shape (sum(counts),) int32, in no
        particular order.
    """
    n_users, n_movies = len(users.counts), len(movies.popularity)
    component_weights = np.hstack(
        [(1 - POPULAR_SHARE) * users.topics, np.full((n_users, 1), POPULAR_SHARE)]
    )
    item_probs = _item_probabilities(movies)

    need = users.counts.copy()
    accept_rate = np.ones(n_users)
    accepted: list[np.ndarray] = []
    # Sorted pair keys (user_idx * n_movies + item_idx) of users still drawing.
    open_keys = np.empty(0, dtype=np.int64)
    for round_number in range(MAX_DRAW_ROUNDS):
        if not need.any():
            break
        draws = np.ceil(1.2 * need / np.maximum(accept_rate, 0.01)).astype(np.int64)
        draws[need > 0] += 2
        keys = _draw_with_replacement(rng, draws, component_weights, item_probs)
        keys = keys[~_isin_sorted(keys, open_keys)]
        keys = _first_distinct(keys, need, n_movies)

        got = np.bincount(keys // n_movies, minlength=n_users)
        accept_rate = np.where(draws > 0, got / np.maximum(draws, 1), 1.0)
        need -= got
        accepted.append(keys)
        open_keys = np.concatenate([open_keys, keys[need[keys // n_movies] > 0]])
        open_keys = np.sort(open_keys[need[open_keys // n_movies] > 0])
        log.debug(
            "draw round %d: %d draws, %d pairs kept, %d users short",
            round_number,
            draws.sum(),
            len(keys),
            np.count_nonzero(need),
        )

    if need.any():
        accepted.append(
            _draw_exact(rng, need, open_keys, component_weights, item_probs)
        )
    user_idx, item_idx = np.divmod(np.concatenate(accepted), n_movies)
    return user_idx.astype(np.int32), item_idx.astype(np.int32)


def _item_probabilities(movies: _Movies) -> np.ndarray:
    """Return P(movie | component), shape (N_TOPICS + 1, n_movies), float64.

    Row t < N_TOPICS is popularity times the movies' weight on topic t; the
    last row is popularity alone. Every row sums to 1.
    """
    by_topic = movies.topics.T * movies.popularity
    probs = np.vstack([by_topic, movies.popularity])
    return probs / probs.sum(axis=1, keepdims=True)


def _draw_with_replacement(
    rng: np.random.Generator,
    draws: np.ndarray,
    component_weights: np.ndarray,
    item_probs: np.ndarray,
) -> np.ndarray:
    """Draw ``draws[u]`` movies for each user u, with replacement.

    Returns:
        Pair keys ``user_idx * n_movies + item_idx``, int64, grouped by user
        in draw order.
    """
    n_components, n_movies = item_probs.shape
    user_idx = np.repeat(np.arange(len(draws)), draws)
    component = _sample_rows(rng, np.cumsum(component_weights, axis=1), user_idx)

    # Items of each component come from a shuffled pool with multinomial
    # counts. That has the same distribution as one inverse-CDF draw per item
    # and runs several times faster, because it needs no binary search.
    item_idx = np.empty(len(user_idx), dtype=np.int64)
    by_component = np.argsort(component.astype(np.int16), kind="stable")
    sizes = np.bincount(component, minlength=n_components)
    ends = np.cumsum(sizes)
    for c in range(n_components):
        counts = rng.multinomial(sizes[c], item_probs[c])
        pool = rng.permutation(np.repeat(np.arange(n_movies), counts))
        item_idx[by_component[ends[c] - sizes[c] : ends[c]]] = pool
    return user_idx * n_movies + item_idx


def _sample_rows(
    rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Draw one column per entry of ``rows`` from that row's cumulative ``cdf``.

    Adding r to row r of ``cdf`` (each row ends at 1) makes one increasing
    array, so a single searchsorted inverts every row's distribution at once.
    """
    n_cols = cdf.shape[1]
    shifted = (cdf + np.arange(len(cdf))[:, None]).ravel()
    positions = np.searchsorted(shifted, rows + rng.random(len(rows)), side="right")
    # row + U(0, 1) can round up to row + 1, which would land in the next row.
    return np.minimum(positions - rows * n_cols, n_cols - 1)


def _isin_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    positions = np.searchsorted(sorted_keys, keys)
    positions = np.minimum(positions, len(sorted_keys) - 1)
    return sorted_keys[positions] == keys


def _first_distinct(keys: np.ndarray, need: np.ndarray, n_movies: int) -> np.ndarray:
    """Keep each user's first ``need[u]`` distinct keys, in draw order.

    ``keys`` must be grouped by user in draw order, as
    ``_draw_with_replacement`` returns them.
    """
    _, first = np.unique(keys, return_index=True)
    is_first = np.zeros(len(keys), dtype=bool)
    is_first[first] = True
    keys = keys[is_first]
    user_idx = keys // n_movies
    rank = np.arange(len(keys)) - np.searchsorted(user_idx, user_idx)
    return keys[rank < need[user_idx]]


def _draw_exact(
    rng: np.random.Generator,
    need: np.ndarray,
    drawn_keys: np.ndarray,
    component_weights: np.ndarray,
    item_probs: np.ndarray,
) -> np.ndarray:
    """Draw ``need[u]`` more movies for every user u, none in ``drawn_keys``.

    Computes each short user's full probability row and takes the top
    ``need[u]`` of log(p) + Gumbel noise, a block of users at a time.
    ``drawn_keys`` must contain every pair already drawn for those users.

    Returns:
        Pair keys ``user_idx * n_movies + item_idx``, int64.
    """
    n_movies = item_probs.shape[1]
    short_users = np.flatnonzero(need)
    block = max(1, CHUNK_ROWS // n_movies)
    parts = []
    for start in range(0, len(short_users), block):
        rows = short_users[start : start + block]
        with np.errstate(divide="ignore"):
            keys = np.log(component_weights[rows] @ item_probs)
        keys += rng.gumbel(size=keys.shape)

        # Movies the user already has must not come again.
        block_drawn = drawn_keys[np.isin(drawn_keys // n_movies, rows)]
        block_row = np.searchsorted(rows, block_drawn // n_movies)
        keys[block_row, block_drawn % n_movies] = -np.inf

        order = np.argsort(-keys, axis=1)
        keep = np.arange(n_movies) < need[rows][:, None]
        user_keys = np.repeat(rows, need[rows]) * n_movies
        parts.append(user_keys + order[keep])
    log.debug("exact draw for %d users", len(short_users))
    return np.concatenate(parts)


def _draw_stars(
    rng: np.random.Generator,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    users: _Users,
    movies: _Movies,
) -> np.ndarray:
    """Draw a star rating, 1-5, for every pair.

    score = quality[j] + bias[u] + affinity[u, j] + noise, each term scaled
    by its weight. The scores are cut into stars at the quantiles that give
    ``STAR_SHARES``.

    Returns:
        Stars, shape (n_ratings,), int8.
    """
    scores = np.empty(len(user_idx))
    for start in range(0, len(user_idx), CHUNK_ROWS):
        users_chunk = user_idx[start : start + CHUNK_ROWS]
        items_chunk = item_idx[start : start + CHUNK_ROWS]
        # affinity averages 1 over uniformly random pairs and is at most N_TOPICS.
        affinity = N_TOPICS * np.einsum(
            "ij,ij->i", users.topics[users_chunk], movies.topics[items_chunk]
        )
        scores[start : start + CHUNK_ROWS] = (
            QUALITY_WEIGHT * movies.quality[items_chunk]
            + BIAS_WEIGHT * users.bias[users_chunk]
            + AFFINITY_WEIGHT * affinity
            + NOISE_WEIGHT * rng.standard_normal(len(users_chunk))
        )
    cuts = np.quantile(scores, np.cumsum(STAR_SHARES)[:-1])
    return (1 + np.searchsorted(cuts, scores, side="right")).astype(np.int8)


def _draw_timestamps(
    rng: np.random.Generator, user_idx: np.ndarray, n_users: int
) -> np.ndarray:
    """Draw a rating time per pair, in seconds since the epoch (int64).

    Each user joins at a uniform time in ``JOIN_WINDOW_S`` after
    ``JOIN_START`` and rates over a log-uniform span of MIN_SPAN_S to
    MAX_SPAN_S.
    """
    join = JOIN_START + rng.integers(0, JOIN_WINDOW_S, n_users)
    span = np.exp(rng.uniform(np.log(MIN_SPAN_S), np.log(MAX_SPAN_S), n_users))
    offsets = span[user_idx] * rng.random(len(user_idx))
    return join[user_idx] + offsets.astype(np.int64)


# --- Files ------------------------------------------------------------------


@contextmanager
def _open_for_replace(path: Path) -> Iterator[BinaryIO]:
    """Open ``path.part`` for writing and move it to ``path`` on success.

    A reader never sees a half-written file under the final name.
    """
    partial = path.with_name(path.name + ".part")
    with partial.open("wb") as file:
        yield file
    os.replace(partial, path)


def _write_movies(path: Path, movies: _Movies) -> None:
    lines = [
        f"{item_idx + 1}::{title}::{genres}\n"
        for item_idx, (title, genres) in enumerate(
            zip(movies.titles, movies.genres, strict=True)
        )
    ]
    with _open_for_replace(path) as file:
        file.write("".join(lines).encode("iso-8859-1"))


def _write_users(path: Path, rng: np.random.Generator, n_users: int) -> None:
    """Write ``users.dat`` with demographics in MovieLens 1M's codes.

    Gender is M or F, age is the lower bound of an age band, occupation is a
    code from 0 to 20 and the zip code has five digits. None of these values
    affect the ratings.
    """
    genders = np.where(rng.random(n_users) < MALE_SHARE, "M", "F")
    ages = rng.choice(AGE_BANDS, n_users, p=AGE_BAND_SHARES)
    occupations = rng.integers(0, 21, n_users)
    zip_codes = rng.integers(0, 100_000, n_users)
    lines = [
        f"{user_idx + 1}::{gender}::{age}::{occupation}::{zip_code:05d}\n"
        for user_idx, (gender, age, occupation, zip_code) in enumerate(
            zip(genders, ages, occupations, zip_codes, strict=True)
        )
    ]
    with _open_for_replace(path) as file:
        file.write("".join(lines).encode("ascii"))


def _write_ratings(
    path: Path,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    stars: np.ndarray,
    timestamps: np.ndarray,
) -> None:
    """Write ``ratings.dat`` sorted by user and then time, ``CHUNK_ROWS`` at a time."""
    # One int64 sort key sorts several times faster than np.lexsort. Offsets
    # from JOIN_START are under four years, far below 2**32 seconds.
    sort_key = user_idx.astype(np.int64) << 32 | (timestamps - JOIN_START)
    order = np.argsort(sort_key, kind="stable")
    with _open_for_replace(path) as file:
        for start in range(0, len(order), CHUNK_ROWS):
            rows = order[start : start + CHUNK_ROWS]
            columns = [
                user_idx[rows] + 1,
                item_idx[rows] + 1,
                stars[rows],
                timestamps[rows],
            ]
            file.write(_format_rows(columns))


def _format_rows(columns: list[np.ndarray], sep: bytes = b"::") -> bytes:
    """Format columns of non-negative integers as ``sep``-separated lines.

    Each value gets a fixed-width slot of digits, left-padded with NUL bytes
    that are removed at the end. This runs several times faster than
    ``DataFrame.to_csv``, which also accepts only a one-character separator.
    """
    widths = [len(str(int(column.max()))) for column in columns]
    line_width = sum(widths) + len(sep) * (len(columns) - 1) + 1
    table = np.zeros((len(columns[0]), line_width), dtype=np.uint8)
    separator = np.frombuffer(sep, dtype=np.uint8)

    start = 0
    for i, (column, width) in enumerate(zip(columns, widths, strict=True)):
        values = column.astype(np.int64)
        for place in range(width):
            digits = (ord("0") + values // 10**place % 10).astype(np.uint8)
            if place > 0:
                digits[values < 10**place] = 0  # no leading zeros
            table[:, start + width - 1 - place] = digits
        start += width
        if i < len(columns) - 1:
            table[:, start : start + len(sep)] = separator
            start += len(sep)
    table[:, -1] = ord("\n")
    return table.tobytes().replace(b"\0", b"")


def _write_readme(
    path: Path, n_ratings: int, n_users: int, n_movies: int, seed: int
) -> None:
    text = f"""\
Synthetic data generated by movie-recs (jobs/synthetic.py), seed {seed}.

This is not MovieLens data. The files follow the layout of MovieLens 1M
(movies.dat in ISO-8859-1; ratings.dat and users.dat in ASCII; fields
separated by "::"), but every user, rating and demographic value is
randomly generated, and all titles are invented except for {len(DEMO_MOVIES)} well-known
titles that the movie-recs demo refers to by name.

ratings.dat  {n_ratings} lines  UserID::MovieID::Rating::Timestamp
users.dat    {n_users} lines  UserID::Gender::Age::Occupation::Zip-code
movies.dat   {n_movies} lines  MovieID::Title::Genres

Every user has at least {MIN_RATINGS_PER_USER} ratings, and no user rates the
same movie twice. Some movies may have no ratings.
"""
    with _open_for_replace(path) as file:
        file.write(text.encode("ascii"))


# --- Command line -----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Write a data set as the command line requests and print its folder.

    Returns:
        The exit status: 0 on success, 1 if writing failed. Invalid
        arguments exit with status 2 through argparse.
    """
    parser = argparse.ArgumentParser(
        prog="python -m jobs.synthetic",
        description=(
            "Write synthetic ratings in the MovieLens 1M layout (movies.dat, "
            "ratings.dat, users.dat, README) into DEST."
        ),
    )
    parser.add_argument(
        "dest",
        type=Path,
        metavar="DEST",
        help="folder to write the files into, created if missing",
    )
    parser.add_argument(
        "--ratings",
        type=int,
        default=1_000_000,
        metavar="N",
        help="number of ratings, the lines of ratings.dat (default: 1000000)",
    )
    parser.add_argument(
        "--users",
        type=int,
        metavar="N",
        help=(
            "number of users (default: scaled from --ratings: 6040 at 1M, "
            "about 138000 at 20M)"
        ),
    )
    parser.add_argument(
        "--movies",
        type=int,
        metavar="N",
        help=(
            "number of movies (default: scaled from --ratings: 3700 at 1M, "
            "about 27000 at 20M)"
        ),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the random generator; equal seeds give equal files (default: 42)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also log DEBUG detail (draw rounds) on stderr",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        dest = write_synthetic_movielens(
            args.dest,
            n_ratings=args.ratings,
            n_users=args.users,
            n_movies=args.movies,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        log.error("writing %s failed: %s", args.dest, exc)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tests of the synthetic data generator in the MovieLens 1M layout."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs import synthetic
from jobs.synthetic import default_sizes, main, write_synthetic_movielens

GENRE_NAMES = {
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
}

# The demo looks these titles up by name, with exactly these genres.
DEMO_TITLES = {
    "Toy Story (1995)": "Animation|Children's|Comedy",
    "Back to the Future (1985)": "Comedy|Sci-Fi",
    "Terminator, The (1984)": "Action|Sci-Fi|Thriller",
    "Men in Black (1997)": "Action|Adventure|Comedy|Sci-Fi",
    "Jurassic Park (1993)": "Action|Adventure|Sci-Fi",
    "Jaws (1975)": "Action|Horror",
    "Misérables, Les (1995)": "Drama|Musical",
}

SMALL_RATINGS = 5_000
STAR_SHARES = {1: 0.06, 2: 0.11, 3: 0.26, 4: 0.35, 5: 0.22}


def read_lines(path: Path, encoding: str = "ascii") -> list[list[str]]:
    """Split a ``::``-separated file into lists of fields, one per line."""
    text = path.read_bytes().decode(encoding)
    return [line.split("::") for line in text.splitlines()]


def read_ratings(folder: Path) -> np.ndarray:
    """Return ratings.dat as int64, shape (n, 4): user, movie, stars, timestamp."""
    rows = read_lines(folder / "ratings.dat")
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def read_movies(folder: Path) -> dict[str, str]:
    """Return movies.dat as {title: genres}."""
    rows = read_lines(folder / "movies.dat", encoding="iso-8859-1")
    return {title: genres for _, title, genres in rows}


def ratings_per_user(ratings: np.ndarray) -> np.ndarray:
    return np.bincount(ratings[:, 0])[1:]


def split_half_correlation(ids: np.ndarray, stars: np.ndarray) -> float:
    """Correlate mean stars per id between the even and the odd rows.

    Only ids with at least 10 rows in each half count.
    """
    means = []
    for half in (slice(0, None, 2), slice(1, None, 2)):
        counts = np.bincount(ids[half], minlength=ids.max() + 1)
        sums = np.bincount(ids[half], weights=stars[half], minlength=ids.max() + 1)
        means.append((counts, sums / np.maximum(counts, 1)))
    (counts_a, means_a), (counts_b, means_b) = means
    enough = (counts_a >= 10) & (counts_b >= 10)
    return float(np.corrcoef(means_a[enough], means_b[enough])[0, 1])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    return write_synthetic_movielens(folder, n_ratings=SMALL_RATINGS, seed=7)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set large enough for statistical checks of taste structure."""
    folder = tmp_path_factory.mktemp("medium")
    return write_synthetic_movielens(folder, n_ratings=20_000, seed=11)


# --- Sizes and ids ------------------------------------------------------------


def test_ratings_count_exact(small: Path) -> None:
    assert len(read_ratings(small)) == SMALL_RATINGS


def test_default_sizes_applied(small: Path) -> None:
    n_users, n_movies = default_sizes(SMALL_RATINGS)
    assert len(read_lines(small / "users.dat")) == n_users
    assert len(read_lines(small / "movies.dat", "iso-8859-1")) == n_movies


def test_default_sizes_match_movielens() -> None:
    assert default_sizes(1_000_000) == (6_040, 3_700)
    n_users, n_movies = default_sizes(20_000_000)
    assert n_users == pytest.approx(138_000, rel=0.01)
    assert n_movies == pytest.approx(27_000, rel=0.01)


def test_explicit_sizes_exact(tmp_path: Path) -> None:
    write_synthetic_movielens(tmp_path, n_ratings=3_000, n_users=60, n_movies=200)
    ratings = read_ratings(tmp_path)
    user_ids = [int(row[0]) for row in read_lines(tmp_path / "users.dat")]
    movie_ids = [
        int(row[0]) for row in read_lines(tmp_path / "movies.dat", "iso-8859-1")
    ]

    assert len(ratings) == 3_000
    assert user_ids == list(range(1, 61))
    assert movie_ids == list(range(1, 201))
    assert set(ratings[:, 0]) == set(range(1, 61))
    assert ratings[:, 1].min() >= 1
    assert ratings[:, 1].max() <= 200


def test_rated_ids_within_files(small: Path) -> None:
    ratings = read_ratings(small)
    n_users = len(read_lines(small / "users.dat"))
    n_movies = len(read_lines(small / "movies.dat", "iso-8859-1"))
    assert ratings[:, 0].min() == 1
    assert ratings[:, 0].max() == n_users
    assert ratings[:, 1].min() >= 1
    assert ratings[:, 1].max() <= n_movies


def test_no_duplicate_pairs(small: Path) -> None:
    ratings = read_ratings(small)
    pairs = {(user, movie) for user, movie in ratings[:, :2].tolist()}
    assert len(pairs) == len(ratings)


def test_every_user_has_twenty_ratings(small: Path) -> None:
    counts = ratings_per_user(read_ratings(small))
    assert len(counts) == len(read_lines(small / "users.dat"))
    assert counts.min() >= 20


def test_no_user_rates_half_the_movies(small: Path) -> None:
    counts = ratings_per_user(read_ratings(small))
    n_movies = len(read_lines(small / "movies.dat", "iso-8859-1"))
    assert counts.max() <= n_movies // 2


# --- Ratings, timestamps and users ------------------------------------------


def test_stars_whole_one_to_five(small: Path) -> None:
    stars = read_ratings(small)[:, 2]
    assert set(stars.tolist()) == {1, 2, 3, 4, 5}


def test_star_shares_near_movielens(small: Path) -> None:
    stars = read_ratings(small)[:, 2]
    for star, share in STAR_SHARES.items():
        assert np.mean(stars == star) == pytest.approx(share, abs=0.01), star


def test_ratings_sorted_by_user_then_time(small: Path) -> None:
    ratings = read_ratings(small)
    order = np.lexsort((ratings[:, 3], ratings[:, 0]))
    assert np.array_equal(order, np.arange(len(ratings)))


def test_timestamps_from_2000_on(small: Path) -> None:
    timestamps = read_ratings(small)[:, 3]
    assert timestamps.min() >= 946_684_800  # 2000-01-01T00:00:00Z
    assert timestamps.max() < 1_072_915_200  # 2004-01-01T00:00:00Z


def test_users_fields_use_movielens_codes(small: Path) -> None:
    for user_id, gender, age, occupation, zip_code in read_lines(small / "users.dat"):
        assert gender in {"M", "F"}, user_id
        assert age in {"1", "18", "25", "35", "45", "50", "56"}, user_id
        assert 0 <= int(occupation) <= 20, user_id
        assert re.fullmatch(r"\d{5}", zip_code), user_id


def test_readme_says_synthetic(small: Path) -> None:
    readme = (small / "README").read_text(encoding="ascii")
    assert "Synthetic data generated by movie-recs" in readme
    assert "This is not MovieLens data." in readme


# --- Movies -----------------------------------------------------------------


def test_demo_titles_present(small: Path) -> None:
    movies = read_movies(small)
    for title, genres in DEMO_TITLES.items():
        assert movies.get(title) == genres, title


def test_accented_title_in_iso_8859_1(small: Path) -> None:
    raw = (small / "movies.dat").read_bytes()
    assert "Misérables, Les (1995)".encode("iso-8859-1") in raw
    assert "é".encode() not in raw
    assert "Misérables, Les (1995)" in read_movies(small)


def test_titles_unique(small: Path) -> None:
    rows = read_lines(small / "movies.dat", "iso-8859-1")
    titles = [title for _, title, _ in rows]
    assert len(set(titles)) == len(titles)


def test_titles_shaped_name_year(small: Path) -> None:
    for title in read_movies(small):
        assert re.fullmatch(r"\S.* \((19[1-9]\d|2000)\)", title), title


def test_genres_from_movielens_names(small: Path) -> None:
    for title, genres in read_movies(small).items():
        names = genres.split("|")
        assert 1 <= len(names) <= 4, title
        assert len(set(names)) == len(names), title
        assert set(names) <= GENRE_NAMES, title


# --- Shape and learnable structure ------------------------------------------


def test_popular_movies_take_large_share(small: Path) -> None:
    ratings = read_ratings(small)
    n_movies = len(read_lines(small / "movies.dat", "iso-8859-1"))
    counts = np.sort(np.bincount(ratings[:, 1], minlength=n_movies + 1)[1:])[::-1]
    top_decile_share = counts[: n_movies // 10].sum() / len(ratings)
    # Equal popularity would give the top decile about 15 % at this size.
    assert top_decile_share > 0.25


def test_user_activity_long_tailed(small: Path) -> None:
    counts = ratings_per_user(read_ratings(small))
    assert counts.max() > 3 * np.median(counts)


def test_demo_movies_popular_and_well_rated(medium: Path) -> None:
    ratings = read_ratings(medium)
    counts = np.bincount(ratings[:, 1])
    top_decile_count = np.quantile(counts[1:], 0.9)
    mean_stars = ratings[:, 2].mean()
    for movie_id in range(1, len(DEMO_TITLES) + 1):
        movie_stars = ratings[ratings[:, 1] == movie_id, 2]
        assert counts[movie_id] >= top_decile_count, movie_id
        assert movie_stars.mean() > mean_stars + 0.4, movie_id


def test_users_keep_genre_taste(medium: Path) -> None:
    """A user's genre mix in one half of their ratings predicts the other half."""
    ratings = read_ratings(medium)
    rows = read_lines(medium / "movies.dat", "iso-8859-1")
    genre_list = sorted(GENRE_NAMES)
    has_genre = np.zeros((len(rows) + 1, len(genre_list)))
    for movie_id, _, genres in rows:
        for name in genres.split("|"):
            has_genre[int(movie_id), genre_list.index(name)] = 1

    # Genre shares per user in each half, centred on the mean user and scaled
    # to unit length, so that the dot product is a cosine similarity.
    profiles = []
    for half in (slice(0, None, 2), slice(1, None, 2)):
        shares = np.zeros((ratings[:, 0].max() + 1, len(genre_list)))
        np.add.at(shares, ratings[half, 0], has_genre[ratings[half, 1]])
        shares = shares[1:] / shares[1:].sum(axis=1, keepdims=True)
        profiles.append(shares)
    centre = (profiles[0] + profiles[1]).mean(axis=0) / 2
    first, second = (p - centre for p in profiles)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second /= np.linalg.norm(second, axis=1, keepdims=True)

    same_user = (first * second).sum(axis=1).mean()
    other_user = (first * np.roll(second, 1, axis=0)).sum(axis=1).mean()
    assert same_user > other_user + 0.15


def test_stars_grow_with_hidden_affinity() -> None:
    """Stars correlate with the hidden user-movie topic affinity."""
    n_users, n_movies = default_sizes(20_000)
    rng = np.random.default_rng(11)
    movies = synthetic._draw_movies(rng, n_movies)
    users = synthetic._draw_users(rng, n_users, 20_000, n_movies)
    user_idx, item_idx = synthetic._draw_pairs(rng, users, movies)
    stars = synthetic._draw_stars(rng, user_idx, item_idx, users, movies)

    affinity = (users.topics[user_idx] * movies.topics[item_idx]).sum(axis=1)
    # About 0.33 with the tuned weights, and below 0 without the affinity term.
    assert np.corrcoef(stars, affinity)[0, 1] > 0.2


def test_movie_mean_stars_consistent(medium: Path) -> None:
    ratings = read_ratings(medium)
    assert split_half_correlation(ratings[:, 1], ratings[:, 2]) > 0.5


def test_user_mean_stars_consistent(medium: Path) -> None:
    ratings = read_ratings(medium)
    assert split_half_correlation(ratings[:, 0], ratings[:, 2]) > 0.4


# --- Determinism --------------------------------------------------------------


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = write_synthetic_movielens(tmp_path / "a", n_ratings=2_000, seed=3)
    second = write_synthetic_movielens(tmp_path / "b", n_ratings=2_000, seed=3)
    for name in ("movies.dat", "ratings.dat", "users.dat", "README"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_other_seed_other_ratings(tmp_path: Path) -> None:
    first = write_synthetic_movielens(tmp_path / "a", n_ratings=2_000, seed=3)
    second = write_synthetic_movielens(tmp_path / "b", n_ratings=2_000, seed=4)
    ratings_a = (first / "ratings.dat").read_bytes()
    ratings_b = (second / "ratings.dat").read_bytes()
    assert ratings_a != ratings_b


# --- Sampling paths and invariants ------------------------------------------


@pytest.mark.parametrize("max_rounds", [0, 1])
def test_exact_draw_completes_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_rounds: int
) -> None:
    """Users left short by the rounds of cheap draws get the rest exactly."""
    monkeypatch.setattr(synthetic, "MAX_DRAW_ROUNDS", max_rounds)
    write_synthetic_movielens(tmp_path, n_ratings=4_000, n_users=50, n_movies=300)
    ratings = read_ratings(tmp_path)
    pairs = {(user, movie) for user, movie in ratings[:, :2].tolist()}
    counts = ratings_per_user(ratings)

    assert len(ratings) == 4_000
    assert len(pairs) == len(ratings)
    assert len(counts) == 50
    assert counts.min() >= 20
    assert counts.max() <= 150


@st.composite
def feasible_sizes(draw: st.DrawFn) -> tuple[int, int, int]:
    """Draw (n_ratings, n_users, n_movies) that the generator must accept."""
    n_users = draw(st.integers(1, 30))
    n_movies = draw(st.integers(40, 400))
    max_per_user = n_movies // 2
    n_ratings = draw(st.integers(20 * n_users, max_per_user * n_users))
    return n_ratings, n_users, n_movies


@settings(max_examples=30, deadline=None)
@given(sizes=feasible_sizes(), seed=st.integers(0, 2**32 - 1))
def test_invariants_hold_for_any_sizes(sizes: tuple[int, int, int], seed: int) -> None:
    n_ratings, n_users, n_movies = sizes
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_movielens(
            Path(folder),
            n_ratings=n_ratings,
            n_users=n_users,
            n_movies=n_movies,
            seed=seed,
        )
        ratings = read_ratings(Path(folder))
        titles = read_movies(Path(folder))
    pairs = {(user, movie) for user, movie in ratings[:, :2].tolist()}
    counts = np.bincount(ratings[:, 0], minlength=n_users + 1)[1:]

    assert len(ratings) == n_ratings
    assert len(pairs) == n_ratings
    assert len(counts) == n_users
    assert counts.min() >= 20
    assert counts.max() <= n_movies // 2
    assert ratings[:, 1].max() <= n_movies
    assert len(titles) == n_movies


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"n_ratings": 100, "n_users": 10}, "n_ratings=100 is too small"),
        ({"n_ratings": 1_000, "n_users": 0}, "n_users=0 is invalid"),
        ({"n_ratings": 1_000, "n_movies": 6}, "n_movies=6 is invalid"),
        ({"n_ratings": 1_000, "n_movies": 39}, "n_movies=39 is too small"),
        ({"n_ratings": 10**6, "n_users": 10, "n_movies": 100}, "is too large"),
        ({"n_ratings": 10**6, "n_movies": 10**7}, "titles can be invented"),
    ],
)
def test_impossible_sizes_raise(
    tmp_path: Path, sizes: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_movielens(tmp_path, **sizes)
    assert not any(tmp_path.iterdir())


def test_format_rows_digit_boundaries() -> None:
    columns = [np.array([0, 9, 10, 99, 100]), np.array([5, 1, 1_000_000_000, 7, 42])]
    expected = b"0::5\n9::1\n10::1000000000\n99::7\n100::42\n"
    assert synthetic._format_rows(columns) == expected


# --- Command line -----------------------------------------------------------


def test_cli_writes_and_prints_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "data"
    status = main([str(dest), "--ratings", "2000", "--seed", "5"])
    assert status == 0
    assert capsys.readouterr().out == f"{dest}\n"
    assert len(read_ratings(dest)) == 2_000


def test_cli_rejects_impossible_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "data"), "--ratings", "100", "--users", "10"])
    assert exit_info.value.code == 2
    assert "n_ratings=100 is too small" in capsys.readouterr().err

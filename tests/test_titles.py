"""Title lookup: exact, any case, moved articles, missing years, ambiguity."""

from __future__ import annotations

import pytest

from jobs.errors import DataError
from jobs.titles import Movie, TitleIndex, canonical_title

CATALOGUE = [
    Movie(1, "Toy Story (1995)"),
    Movie(2, "Terminator, The (1984)"),
    Movie(3, "Misérables, Les (1995)"),
    Movie(4, "Hamlet (1990)"),
    Movie(5, "Hamlet (1996)"),
    Movie(6, "Emma (1996)"),
    Movie(7, "Emma (1996)"),
    Movie(8, "Jaws (1975)"),
    Movie(9, "Jaws 2 (1978)"),
]


@pytest.fixture
def index() -> TitleIndex:
    return TitleIndex(CATALOGUE)


@pytest.mark.parametrize(
    ("query", "movie_id"),
    [
        ("Toy Story (1995)", 1),
        ("toy story (1995)", 1),
        ("  TOY   STORY (1995) ", 1),
        ("The Terminator (1984)", 2),
        ("the terminator (1984)", 2),
        ("Terminator, The (1984)", 2),
        ("The Terminator", 2),
        ("Les Misérables (1995)", 3),
        ("Misérables, Les (1995)", 3),
        ("Jaws", 8),
        ("Les Miserables (1995)", 3),
        ("miserables, les", 3),
        ("jaws (1975)", 8),
    ],
)
def test_resolve_finds_movie(index: TitleIndex, query: str, movie_id: int) -> None:
    assert index.resolve(query).movie_id == movie_id


def test_resolve_lists_same_name_candidates(index: TitleIndex) -> None:
    with pytest.raises(DataError) as error:
        index.resolve("Hamlet")
    message = str(error.value)
    assert "matches 2 movies" in message
    assert "Hamlet (1990) (movie_id 4)" in message
    assert "Hamlet (1996) (movie_id 5)" in message
    assert "--movie-id" in message


def test_resolve_lists_duplicate_titles(index: TitleIndex) -> None:
    with pytest.raises(DataError) as error:
        index.resolve("Emma (1996)")
    assert "movie_id 6" in str(error.value)
    assert "movie_id 7" in str(error.value)


def test_resolve_year_selects_one(index: TitleIndex) -> None:
    assert index.resolve("Hamlet (1996)").movie_id == 5


def test_unknown_title_suggests_closest(index: TitleIndex) -> None:
    with pytest.raises(DataError) as error:
        index.resolve("Toy Stroy (1995)")
    message = str(error.value)
    assert "'Toy Stroy (1995)' not found" in message
    assert "did you mean: Toy Story (1995)" in message


def test_unknown_title_without_close_match(index: TitleIndex) -> None:
    with pytest.raises(DataError) as error:
        index.resolve("Zzyzx Road (2006)")
    assert "not found" in str(error.value)
    assert "did you mean" not in str(error.value)


def test_exact_match_beats_name_match(index: TitleIndex) -> None:
    assert [m.movie_id for m in index.candidates("Jaws 2 (1978)")] == [9]


def test_canonical_title_moves_article() -> None:
    assert canonical_title("The Terminator (1984)") == "terminator, the (1984)"
    assert canonical_title("Terminator, The (1984)") == "terminator, the (1984)"


def test_short_query_suggests_containing_titles() -> None:
    index = TitleIndex(
        [
            Movie(1, "Star Wars: Episode IV - A New Hope (1977)"),
            Movie(2, "Star Wars: Episode V - The Empire Strikes Back (1980)"),
            Movie(3, "Jaws (1975)"),
        ]
    )
    with pytest.raises(DataError) as error:
        index.resolve("Star Wars")
    message = str(error.value)
    assert "did you mean: Star Wars: Episode IV - A New Hope (1977)" in message
    assert "Star Wars: Episode V - The Empire Strikes Back (1980)" in message
    assert "Jaws" not in message


def test_empty_catalogue_says_to_ingest() -> None:
    with pytest.raises(DataError, match="the movies table is empty"):
        TitleIndex([]).resolve("Jaws (1975)")

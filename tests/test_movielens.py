"""Tests for jobs.movielens on tiny synthetic files, and one on the real ml-1m."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from jobs.errors import DataError
from jobs.movielens import (
    ML_100K_GENRES,
    MovieLensData,
    detect_layout,
    read_movielens,
)

# Turn any warning, such as pandas' ParserWarning, into a test failure.
pytestmark = pytest.mark.filterwarnings("error")

# Synthetic files: made-up titles, ids and timestamps in each layout's syntax.
MOVIES_DAT = [
    "1::Crème Brûlée (1999)::Comedy|Romance",
    "2::Jour de fête, Le (1949)::Comedy",
    "3::Night Train (1998)::Thriller",
]
RATINGS_DAT = [
    "1::1::5::1000000000",
    "1::2::3::1000000100",
    "2::3::4::1000000200",
]


def u_item_line(movie_id: int, title: str, genres: set[str]) -> str:
    """Build a u.item line with the genre flags of ``genres``."""
    flags = ["1" if genre in genres else "0" for genre in ML_100K_GENRES]
    url = f"http://example.org/{movie_id}"
    return "|".join([str(movie_id), title, "01-Jan-1999", "", url, *flags])


U_ITEM = [
    u_item_line(1, "Crème Brûlée (1999)", {"Comedy", "Romance"}),
    u_item_line(2, "Jour de fête, Le (1949)", {"Comedy"}),
    u_item_line(3, "Untitled (1998)", {"unknown"}),
]
U_DATA = [
    "1\t1\t5\t1000000000",
    "1\t2\t3\t1000000100",
    "2\t3\t4\t1000000200",
]

MOVIES_CSV = [
    "movieId,title,genres",
    '1,"Jour de fête, Le (1949)",Comedy|Romance',
    '2,"Film Called ""Quotes"" (2001)",Drama',
    "3,NA,(no genres listed)",
]
RATINGS_CSV = [
    "userId,movieId,rating,timestamp",
    "1,1,4.5,1000000000",
    "1,2,0.5,1000000100",
    "2,3,5.0,1000000200",
]

DEFAULT_FILES = {
    "ml-1m": {"ratings.dat": RATINGS_DAT, "movies.dat": MOVIES_DAT},
    "ml-100k": {"u.data": U_DATA, "u.item": U_ITEM},
    "csv": {"ratings.csv": RATINGS_CSV, "movies.csv": MOVIES_CSV},
}
ENCODINGS = {"ml-1m": "latin-1", "ml-100k": "latin-1", "csv": "utf-8"}


def text_of(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def write_layout(
    folder: Path, layout: str, replaced: dict[str, str] | None = None
) -> Path:
    """Write a layout's default files into ``folder``.

    ``replaced`` maps a file name to the full text that replaces its default.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in DEFAULT_FILES[layout].items():
        text = (replaced or {}).get(name, text_of(lines))
        (folder / name).write_bytes(text.encode(ENCODINGS[layout]))
    return folder


def edited(lines: list[str], line: int, new: str) -> str:
    """Return the file text with 1-based ``line`` replaced by ``new``."""
    changed = list(lines)
    changed[line - 1] = new
    return text_of(changed)


def read_error(folder: Path) -> DataError:
    with pytest.raises(DataError) as caught:
        read_movielens(folder)
    return caught.value


# Reading valid files


def test_ml_1m_columns_and_dtypes(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "ml-1m"))

    assert data.layout == "ml-1m"
    assert list(data.ratings.columns) == ["user_id", "movie_id", "rating", "rated_at"]
    assert data.ratings.dtypes.astype(str).tolist() == [
        "int64",
        "int64",
        "float64",
        "int64",
    ]
    assert list(data.movies.columns) == ["movie_id", "title", "genres"]
    assert data.movies["movie_id"].dtype == "int64"
    assert data.movies["title"].dtype == "str"
    assert data.movies["genres"].dtype == "str"


def test_ml_1m_values_in_file_order(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "ml-1m"))

    assert data.ratings.to_dict("list") == {
        "user_id": [1, 1, 2],
        "movie_id": [1, 2, 3],
        "rating": [5.0, 3.0, 4.0],
        "rated_at": [1000000000, 1000000100, 1000000200],
    }
    assert data.movies["title"].tolist() == [
        "Crème Brûlée (1999)",
        "Jour de fête, Le (1949)",
        "Night Train (1998)",
    ]
    assert data.movies["genres"].tolist() == ["Comedy|Romance", "Comedy", "Thriller"]


def test_ml_1m_resaved_as_utf8(tmp_path: Path) -> None:
    write_layout(tmp_path, "ml-1m")
    (tmp_path / "movies.dat").write_bytes(text_of(MOVIES_DAT).encode("utf-8"))

    data = read_movielens(tmp_path)

    assert data.movies["title"].tolist()[:2] == [
        "Crème Brûlée (1999)",
        "Jour de fête, Le (1949)",
    ]


def test_ml_1m_mixed_encodings_rejected(tmp_path: Path) -> None:
    write_layout(tmp_path, "ml-1m")
    utf8 = text_of(MOVIES_DAT).encode("utf-8")
    mixed = utf8 + "99::Café Society (2016)::Comedy\n".encode("latin-1")
    (tmp_path / "movies.dat").write_bytes(mixed)

    with pytest.raises(DataError) as error:
        read_movielens(tmp_path)

    message = str(error.value)
    assert f"line {len(MOVIES_DAT) + 1}:" in message
    assert "byte 0xE9 is not valid UTF-8" in message
    assert "mixes encodings" in message


def test_ml_1m_quotes_kept_in_title(tmp_path: Path) -> None:
    movies = [*MOVIES_DAT, '4::"Quoted" Night (2000)::Drama']
    write_layout(tmp_path, "ml-1m", {"movies.dat": text_of(movies)})

    data = read_movielens(tmp_path)

    assert data.movies["title"].iloc[3] == '"Quoted" Night (2000)'


def test_ml_1m_crlf_and_no_final_newline(tmp_path: Path) -> None:
    ratings = "\r\n".join(RATINGS_DAT)
    write_layout(tmp_path, "ml-1m", {"ratings.dat": ratings})

    data = read_movielens(tmp_path)

    assert data.ratings["rated_at"].tolist() == [1000000000, 1000000100, 1000000200]


def test_same_title_different_ids_kept(tmp_path: Path) -> None:
    movies = [*MOVIES_DAT, "4::Night Train (1998)::Drama"]
    write_layout(tmp_path, "ml-1m", {"movies.dat": text_of(movies)})

    data = read_movielens(tmp_path)

    same_title = data.movies[data.movies["title"] == "Night Train (1998)"]
    assert same_title["movie_id"].tolist() == [3, 4]


def test_ml_100k_genres_from_flags(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "ml-100k"))

    assert data.layout == "ml-100k"
    assert data.movies["title"].tolist()[:2] == [
        "Crème Brûlée (1999)",
        "Jour de fête, Le (1949)",
    ]
    # The "unknown" flag means that no genre is known.
    assert data.movies["genres"].tolist() == ["Comedy|Romance", "Comedy", ""]
    assert data.movies["genres"].dtype == "str"


def test_ml_100k_ratings(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "ml-100k"))

    assert data.ratings["user_id"].tolist() == [1, 1, 2]
    assert data.ratings["movie_id"].tolist() == [1, 2, 3]
    assert data.ratings["rating"].tolist() == [5.0, 3.0, 4.0]
    assert data.ratings["rated_at"].dtype == "int64"


def test_csv_quoting_and_no_genres(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "csv"))

    assert data.layout == "csv"
    # The title "NA" must stay a string, not become a missing value.
    assert data.movies["title"].tolist() == [
        "Jour de fête, Le (1949)",
        'Film Called "Quotes" (2001)',
        "NA",
    ]
    assert data.movies["genres"].tolist() == ["Comedy|Romance", "Drama", ""]


def test_csv_half_star_ratings(tmp_path: Path) -> None:
    data = read_movielens(write_layout(tmp_path, "csv"))

    assert data.ratings["rating"].tolist() == [4.5, 0.5, 5.0]
    assert data.ratings["rating"].dtype == "float64"


def test_csv_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    ratings = "\ufeff" + "\r\n".join(RATINGS_CSV) + "\r\n"
    write_layout(tmp_path, "csv", {"ratings.csv": ratings})

    data = read_movielens(tmp_path)

    assert data.ratings["user_id"].tolist() == [1, 1, 2]


# Finding the files


@pytest.mark.parametrize("layout", ["ml-1m", "ml-100k", "csv"])
def test_detect_layout_each_layout(tmp_path: Path, layout: str) -> None:
    write_layout(tmp_path, layout)

    assert detect_layout(tmp_path) == layout


def test_layout_in_one_subfolder(tmp_path: Path) -> None:
    write_layout(tmp_path / "ml-1m", "ml-1m")
    (tmp_path / "notes").mkdir()

    data = read_movielens(tmp_path)

    assert data.layout == "ml-1m"
    assert len(data.ratings) == 3


def test_zip_with_subfolder(tmp_path: Path) -> None:
    write_layout(tmp_path / "files" / "ml-latest-small", "csv")
    archive = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        for name in ("ratings.csv", "movies.csv"):
            source = tmp_path / "files" / "ml-latest-small" / name
            zip_file.write(source, f"ml-latest-small/{name}")
    before = sorted(tmp_path.rglob("*"))

    data = read_movielens(archive)

    assert data.layout == "csv"
    assert data.movies["title"].iloc[0] == "Jour de fête, Le (1949)"
    assert sorted(tmp_path.rglob("*")) == before


def test_zip_error_names_member(tmp_path: Path) -> None:
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("ratings.dat", text_of(RATINGS_DAT))
        zip_file.writestr("movies.dat", text_of(MOVIES_DAT[:2]))

    error = read_error(archive)

    assert error.path == str(archive / "ratings.dat")
    assert error.line == 3


def test_detect_layout_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        detect_layout(tmp_path)

    message = str(caught.value)
    assert "ratings.dat and movies.dat (ml-1m)" in message
    assert "u.data and u.item (ml-100k)" in message
    assert "ratings.csv and movies.csv (csv)" in message


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ("ratings.dat", "movies.dat"),
        ("movies.dat", "ratings.dat"),
        ("u.data", "u.item"),
        ("movies.csv", "ratings.csv"),
    ],
)
def test_detect_layout_missing_file(tmp_path: Path, present: str, missing: str) -> None:
    (tmp_path / present).write_text("1\n")

    with pytest.raises(DataError, match=rf"{missing} is missing"):
        detect_layout(tmp_path)


def test_detect_layout_two_layouts(tmp_path: Path) -> None:
    write_layout(tmp_path, "ml-1m")
    write_layout(tmp_path, "csv")

    with pytest.raises(DataError, match="several MovieLens layouts"):
        detect_layout(tmp_path)


def test_detect_layout_two_subfolders(tmp_path: Path) -> None:
    write_layout(tmp_path / "a", "ml-1m")
    write_layout(tmp_path / "b", "ml-100k")

    with pytest.raises(DataError, match=r"several subfolders \(a, b\)"):
        detect_layout(tmp_path)


def test_detect_layout_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        detect_layout(tmp_path / "absent")


def test_detect_layout_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "ratings.zip"
    path.write_text("not a zip archive")

    with pytest.raises(DataError, match="neither a folder nor a valid zip"):
        detect_layout(path)


# Rejecting bad input: (layout, file, file text, line, expected message part).
# A line of None means that the error names the file only.

BAD_FILES = [
    # Wrong field count, including separators of other layouts.
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::3::1000000100::9"),
        2,
        "expected 4 fields separated by '::', found 5",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::3::1000000100::"),
        2,
        "found 5",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 1, "1::1::5::1000000000::::9"),
        1,
        "found 6",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 3, "2::3::4::1000000200::7::8"),
        3,
        "found 6",
    ),
    ("ml-1m", "ratings.dat", edited(RATINGS_DAT, 2, "1::2::3"), 2, "found 3"),
    (
        "ml-1m",
        "ratings.dat",
        text_of(RATINGS_DAT[:2]) + "2::3::4",
        3,
        "found 3 in '2::3::4'",
    ),
    ("ml-1m", "ratings.dat", text_of(RATINGS_DAT[:2]) + "2::", 3, "found 2"),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1,2,3,1000000100"),
        2,
        "found 1 in '1,2,3,1000000100'",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1\t2\t3\t1000000100"),
        2,
        "found 1",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::3::"),
        2,
        "timestamp is empty",
    ),
    ("ml-1m", "movies.dat", edited(MOVIES_DAT, 2, "2::Jour de fête"), 2, "found 2"),
    (
        "ml-1m",
        "movies.dat",
        edited(MOVIES_DAT, 2, "2::Jour de fête::Comedy::x"),
        2,
        "found 4",
    ),
    (
        "ml-1m",
        "movies.dat",
        edited(MOVIES_DAT, 2, "2::Jour de fête::"),
        2,
        "genres is empty",
    ),
    (
        "ml-1m",
        "movies.dat",
        edited(MOVIES_DAT, 3, "3::::Thriller"),
        3,
        "title is empty",
    ),
    ("ml-100k", "u.data", edited(U_DATA, 2, "1\t2\t3\t1000000100\t7"), 2, "found 5"),
    (
        "ml-100k",
        "u.data",
        edited(U_DATA, 2, "1 2 3 1000000100"),
        2,
        "expected 4 fields separated by '\\t', found 1",
    ),
    (
        "ml-100k",
        "u.item",
        edited(U_ITEM, 2, U_ITEM[1].rsplit("|", 1)[0]),
        2,
        "expected 24 fields separated by '|', found 23",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 3, "1,2,0.5,1000000100,x"),
        3,
        "found 5",
    ),
    ("csv", "ratings.csv", edited(RATINGS_CSV, 3, "1,2,0.5"), 3, "found 3"),
    ("csv", "ratings.csv", edited(RATINGS_CSV, 3, "1;2;0.5;1000000100"), 3, "found 1"),
    (
        "csv",
        "movies.csv",
        edited(MOVIES_CSV, 2, "1,Jour de fête, Le (1949),Comedy"),
        2,
        "titles that contain commas must be quoted",
    ),
    (
        "csv",
        "movies.csv",
        edited(MOVIES_CSV, 2, '1,"Jour de fête, Le (1949),Comedy'),
        2,
        "unmatched double quote",
    ),
    # A header line where none is expected, and a missing or wrong CSV header.
    (
        "ml-1m",
        "ratings.dat",
        text_of(["UserID::MovieID::Rating::Timestamp", *RATINGS_DAT]),
        1,
        "user_id 'UserID' is not a number; ratings.dat has no header line, so "
        "remove this line if it is one",
    ),
    (
        "ml-1m",
        "movies.dat",
        text_of(["MovieID::Title::Genres", *MOVIES_DAT]),
        1,
        "movies.dat has no header line",
    ),
    (
        "ml-100k",
        "u.data",
        text_of(["user id\titem id\trating\ttimestamp", *U_DATA]),
        1,
        "u.data has no header line",
    ),
    (
        "csv",
        "ratings.csv",
        text_of(RATINGS_CSV[1:]),
        1,
        "header '1,1,4.5,1000000000' is not the expected "
        "'userId,movieId,rating,timestamp'",
    ),
    (
        "csv",
        "movies.csv",
        edited(MOVIES_CSV, 1, "id,title,genres"),
        1,
        "header 'id,title,genres' is not the expected 'movieId,title,genres'",
    ),
    # Values that are not numbers, or not integers where integers are expected.
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "x::2::3::1000000100"),
        2,
        "user_id 'x' is not a number",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::b::3::1000000100"),
        2,
        "movie_id 'b' is not a number",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::::3::1000000100"),
        2,
        "movie_id is empty",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::three::1000000100"),
        2,
        "rating 'three' is not a number",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::3::soon"),
        2,
        "timestamp 'soon' is not a number",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::3::-1"),
        2,
        "timestamp -1 is not a non-negative integer",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "0::2::3::1000000100"),
        2,
        "user_id 0 is not a positive integer",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1.5::2::3::1000000100"),
        2,
        "user_id 1.5 is not a positive integer",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "99999999999999999999::2::3::1000000100"),
        2,
        "user_id 99999999999999999999 is not within the 64-bit integer range",
    ),
    (
        "ml-1m",
        "movies.dat",
        edited(MOVIES_DAT, 3, "x3::Night Train (1998)::Thriller"),
        3,
        "movie_id 'x3' is not a number",
    ),
    (
        "ml-100k",
        "u.data",
        edited(U_DATA, 3, "2\t3\tfour\t1000000200"),
        3,
        "rating 'four' is not a number",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 4, "2,3,nan,1000000200"),
        4,
        "rating 'nan' is not a number",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 4, "2,3,5.0,later"),
        4,
        "timestamp 'later' is not a number",
    ),
    (
        "ml-100k",
        "u.item",
        edited(U_ITEM, 2, U_ITEM[1][:-1] + "2"),
        2,
        "genre flag 'Western' is 2, expected 0 or 1",
    ),
    # Ratings outside the layout's scale.
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::0::1000000100"),
        2,
        "rating 0 is outside the scale of whole stars 1-5",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::6::1000000100"),
        2,
        "rating 6 is outside the scale of whole stars 1-5",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 2, "1::2::2.5::1000000100"),
        2,
        "rating 2.5 is outside the scale of whole stars 1-5",
    ),
    (
        "ml-100k",
        "u.data",
        edited(U_DATA, 2, "1\t2\t6\t1000000100"),
        2,
        "rating 6 is outside",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 3, "1,2,0.25,1000000100"),
        3,
        "rating 0.25 is outside the scale of half stars 0.5-5.0",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 3, "1,2,0.0,1000000100"),
        3,
        "rating 0 is outside",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 3, "1,2,5.5,1000000100"),
        3,
        "rating 5.5 is outside",
    ),
    # Repeated (user, movie) pairs and movie ids, and unlisted movies.
    (
        "ml-1m",
        "ratings.dat",
        text_of([*RATINGS_DAT, "1::1::4::1000000300"]),
        4,
        "user 1 rated movie 1 again, first on line 1; keep one of the two lines",
    ),
    (
        "ml-100k",
        "u.data",
        text_of([*U_DATA, "2\t3\t1\t1000000300"]),
        4,
        "user 2 rated movie 3 again, first on line 3",
    ),
    (
        "csv",
        "ratings.csv",
        text_of([*RATINGS_CSV, "1,2,1.0,1000000300"]),
        5,
        "user 1 rated movie 2 again, first on line 3",
    ),
    (
        "ml-1m",
        "movies.dat",
        text_of([*MOVIES_DAT, "2::Another Film (2000)::Drama"]),
        4,
        "movie_id 2 is listed again, first on line 2; remove one of the two lines",
    ),
    (
        "ml-100k",
        "u.item",
        text_of([*U_ITEM, U_ITEM[0]]),
        4,
        "movie_id 1 is listed again, first on line 1",
    ),
    (
        "csv",
        "movies.csv",
        text_of([*MOVIES_CSV, "3,Other (2000),Drama"]),
        5,
        "movie_id 3 is listed again, first on line 4",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 3, "2::99::4::1000000200"),
        3,
        "movie_id 99 is not listed in movies.dat; add the movie to movies.dat or "
        "remove the line",
    ),
    (
        "csv",
        "ratings.csv",
        edited(RATINGS_CSV, 2, "1,99,4.5,1000000000"),
        2,
        "movie_id 99 is not listed in movies.csv",
    ),
    # Empty files, blank lines and bytes that the layout does not allow.
    ("ml-1m", "ratings.dat", "", None, "the file is empty"),
    ("ml-1m", "movies.dat", "", None, "the file is empty"),
    ("ml-100k", "u.item", "", None, "the file is empty"),
    ("csv", "ratings.csv", "", None, "the file is empty"),
    ("csv", "movies.csv", MOVIES_CSV[0] + "\n", None, "contains only the header line"),
    (
        "ml-1m",
        "ratings.dat",
        text_of([RATINGS_DAT[0], "", *RATINGS_DAT[1:]]),
        2,
        "the line is blank; remove it",
    ),
    ("ml-1m", "ratings.dat", text_of([*RATINGS_DAT, ""]), 4, "the line is blank"),
    (
        "ml-1m",
        "movies.dat",
        text_of([MOVIES_DAT[0], "", *MOVIES_DAT[1:]]),
        2,
        "the line is blank",
    ),
    (
        "ml-100k",
        "u.data",
        text_of([U_DATA[0], "", *U_DATA[1:]]),
        2,
        "the line is blank",
    ),
    (
        "csv",
        "ratings.csv",
        text_of([*RATINGS_CSV[:2], "", *RATINGS_CSV[2:]]),
        3,
        "the line is blank",
    ),
    (
        "ml-1m",
        "ratings.dat",
        text_of([RATINGS_DAT[0], RATINGS_DAT[1] + "\r" + RATINGS_DAT[2]]),
        2,
        "carriage return",
    ),
    (
        "ml-1m",
        "ratings.dat",
        edited(RATINGS_DAT, 3, "2::3::4\x1f::1000000200"),
        3,
        "control byte 0x1F",
    ),
]


@pytest.mark.parametrize(
    ("layout", "name", "text", "line", "message"),
    BAD_FILES,
    ids=[f"{name}: {message}" for _, name, _, _, message in BAD_FILES],
)
def test_bad_file_rejected(
    tmp_path: Path,
    layout: str,
    name: str,
    text: str,
    line: int | None,
    message: str,
) -> None:
    write_layout(tmp_path, layout, {name: text})

    error = read_error(tmp_path)

    assert error.path == str(tmp_path / name)
    assert error.line == line
    assert message in str(error)


def test_csv_invalid_utf8_names_line(tmp_path: Path) -> None:
    write_layout(tmp_path, "csv")
    movies = text_of(MOVIES_CSV).replace("Quotes", "Qu\udce9tes")
    (tmp_path / "movies.csv").write_bytes(movies.encode("utf-8", "surrogateescape"))

    error = read_error(tmp_path)

    assert error.line == 3
    assert "byte 0xE9 is not valid UTF-8" in str(error)


def test_error_message_format(tmp_path: Path) -> None:
    write_layout(
        tmp_path, "ml-1m", {"ratings.dat": edited(RATINGS_DAT, 2, "1::2::7::1")}
    )

    error = read_error(tmp_path)

    assert str(error) == (
        f"{tmp_path / 'ratings.dat'} line 2: rating 7 is outside the scale of "
        "whole stars 1-5; fix or remove the line"
    )


# The real MovieLens 1M release, found through MOVIELENS_DIR.


@pytest.fixture(scope="module")
def ml_1m() -> MovieLensData:
    folder = os.environ.get("MOVIELENS_DIR")
    if not folder:
        pytest.skip("MOVIELENS_DIR is not set")
    return read_movielens(Path(folder) / "ml-1m")


@pytest.mark.movielens
def test_real_ml_1m_figures(ml_1m: MovieLensData) -> None:
    ratings, movies = ml_1m.ratings, ml_1m.movies

    assert ml_1m.layout == "ml-1m"
    assert len(ratings) == 1_000_209
    assert ratings["user_id"].nunique() == 6_040
    assert ratings["movie_id"].nunique() == 3_706
    assert len(movies) == 3_883
    assert ratings["rating"].value_counts().sort_index().to_dict() == {
        1.0: 56_174,
        2.0: 107_557,
        3.0: 261_197,
        4.0: 348_971,
        5.0: 226_310,
    }
    assert ratings.iloc[0].tolist() == [1, 1193, 5.0, 978300760]
    assert ratings.iloc[-1].tolist() == [6040, 1097, 4.0, 956715569]
    assert "Misérables, Les (1995)" in set(movies["title"])

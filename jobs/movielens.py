"""Read MovieLens ratings and movies in the layouts that GroupLens publishes.

Three layouts are recognised by their file names:

- ``ml-1m``: ``ratings.dat`` and ``movies.dat``, ``::``-separated, ISO-8859-1.
- ``ml-100k``: ``u.data`` (tab-separated) and ``u.item`` (``|``-separated, with
  19 genre flags), ISO-8859-1.
- ``csv``: ``ratings.csv`` and ``movies.csv`` with a header line, UTF-8, as in
  ml-latest-small, ml-latest, ml-20m, ml-25m and ml-32m.

The ISO-8859-1 files are also accepted after being re-saved as UTF-8. No line
is skipped: a malformed line raises ``DataError`` with the file, the 1-based
line number and the value.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from jobs.errors import DataError

log = logging.getLogger(__name__)

# A two- or three-byte UTF-8 sequence. ISO-8859-1 text almost never contains
# one ('Ã' followed by a byte from 0x80-0xBF), so a file that has one and also
# has bytes that are not UTF-8 mixes the two encodings.
UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}")

ML_100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""Genre of each flag field at the end of a ``u.item`` line, in file order."""

# The CSV family writes this instead of an empty genre list.
_NO_GENRES = "(no genres listed)"

# Name of the column that pandas fills when a line has one field too many.
_EXTRA = "_extra"

# "::" is two characters, so it is replaced with this byte for pandas' C parser.
# MovieLens files never contain this byte (ASCII unit separator), and a file that
# does is rejected before the replacement.
_SINGLE_BYTE_SEPARATOR = b"\x1f"


@dataclass(frozen=True)
class MovieLensData:
    """Ratings and movies of one MovieLens release.

    Attributes:
        layout: ``"ml-1m"``, ``"ml-100k"`` or ``"csv"``.
        movies: One row per movie, in file order: ``movie_id`` (int64),
            ``title`` (str) and ``genres`` (str, genre names joined by ``|``,
            ``""`` for none).
        ratings: One row per rating, in file order: ``user_id`` (int64),
            ``movie_id`` (int64), ``rating`` (float64 stars) and ``rated_at``
            (int64 Unix seconds).
    """

    layout: str
    movies: pd.DataFrame
    ratings: pd.DataFrame


@dataclass(frozen=True)
class _FileFormat:
    """Name and syntax of one MovieLens file.

    Only the CSV layout has a header line. Its fields may be double-quoted and
    its bytes must be UTF-8. The other layouts have neither header nor quoting.
    """

    name: str
    separator: str
    columns: tuple[str, ...]
    text_columns: tuple[str, ...] = ()
    header: str | None = None

    @property
    def is_csv(self) -> bool:
        return self.header is not None


@dataclass(frozen=True)
class _RatingScale:
    """Valid star ratings: ``minimum`` to ``maximum`` in steps of ``step``."""

    minimum: float
    maximum: float
    step: float
    description: str


@dataclass(frozen=True)
class _Layout:
    ratings: _FileFormat
    movies: _FileFormat
    scale: _RatingScale


_RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")

_LAYOUTS: dict[str, _Layout] = {
    "ml-1m": _Layout(
        ratings=_FileFormat("ratings.dat", "::", _RATING_COLUMNS),
        movies=_FileFormat(
            "movies.dat",
            "::",
            ("movie_id", "title", "genres"),
            text_columns=("title", "genres"),
        ),
        scale=_RatingScale(1.0, 5.0, 1.0, "whole stars 1-5"),
    ),
    "ml-100k": _Layout(
        ratings=_FileFormat("u.data", "\t", _RATING_COLUMNS),
        movies=_FileFormat(
            "u.item",
            "|",
            (
                "movie_id",
                "title",
                "release_date",
                "video_release_date",
                "imdb_url",
                *ML_100K_GENRES,
            ),
            text_columns=("title", "release_date", "video_release_date", "imdb_url"),
        ),
        scale=_RatingScale(1.0, 5.0, 1.0, "whole stars 1-5"),
    ),
    "csv": _Layout(
        ratings=_FileFormat(
            "ratings.csv",
            ",",
            _RATING_COLUMNS,
            header="userId,movieId,rating,timestamp",
        ),
        movies=_FileFormat(
            "movies.csv",
            ",",
            ("movie_id", "title", "genres"),
            text_columns=("title", "genres"),
            header="movieId,title,genres",
        ),
        scale=_RatingScale(0.5, 5.0, 0.5, "half stars 0.5-5.0"),
    ),
}


@dataclass(frozen=True)
class _Location:
    """Layout found in a source, and the subfolder that contains its files.

    ``folder`` is ``""`` when the files sit at the top level of the folder or
    archive.
    """

    layout: str
    folder: str


@dataclass(frozen=True)
class _TextFile:
    """One MovieLens file whose encoding and header line have been checked.

    Attributes:
        path: Path shown in error messages (``archive.zip/member`` for a zip).
        fmt: Name and syntax of the file.
        content: The file's bytes, without a UTF-8 byte order mark.
        encoding: ``"utf-8"``, or ``"latin-1"`` for an ISO-8859-1 file.
        first_line: Number of the first data line: 2 after a header, else 1.
    """

    path: str
    fmt: _FileFormat
    content: bytes
    encoding: str
    first_line: int


@dataclass(frozen=True)
class _Table:
    """Fields of a parsed file, where row ``i`` is line ``text.first_line + i``."""

    text: _TextFile
    frame: pd.DataFrame


def detect_layout(source: Path) -> str:
    """Find which MovieLens layout a folder or zip archive contains.

    The files may sit at the top level of ``source`` or in exactly one of its
    subfolders, as in the archives that GroupLens publishes (``ml-1m/...``).

    Args:
        source: A folder, or a ``.zip`` archive as GroupLens ships it.

    Returns:
        ``"ml-1m"``, ``"ml-100k"`` or ``"csv"``.

    Raises:
        DataError: If ``source`` does not exist or is neither a folder nor a zip
            archive. Also if no layout is found, in which case the message lists
            the file names looked for, if more than one is found, or if one of a
            layout's two files is missing.
    """
    return _locate(source).layout


def pair_keys(user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray | None:
    """Return one int64 key per (user_id, movie_id) pair, or None if keys overflow.

    The key is ``user_id * (max(movie_ids) + 1) + movie_id``, so equal pairs
    have equal keys and sorting the keys sorts by user, then movie. Hashing
    one column is faster than hashing two: on ml-1m, ``duplicated()`` takes
    0.05 s on the keys and 0.11 s on the pairs. Ids must be non-negative.

    Args:
        user_ids: int64, shape ``(n,)``.
        movie_ids: int64, shape ``(n,)``.

    Returns:
        int64, shape ``(n,)``, or None when a key would not fit in int64.
    """
    if len(user_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    movie_span = int(movie_ids.max()) + 1
    if int(user_ids.max()) + 1 > np.iinfo(np.int64).max // movie_span:
        return None
    return user_ids.astype(np.int64) * movie_span + movie_ids


def read_movielens(source: Path) -> MovieLensData:
    """Read and validate the ratings and movies of a MovieLens release.

    A zip archive is read in memory, so nothing is extracted to disk.

    Args:
        source: A folder, or a ``.zip`` archive as GroupLens ships it (see
            ``detect_layout``).

    Returns:
        The movies and ratings, in file order.

    Raises:
        DataError: If the layout cannot be detected, or for a malformed line.
            The message names the file, the line and the value. Malformed lines
            are: wrong field count, blank line, missing or wrong CSV header,
            invalid number or encoding, rating outside the layout's scale,
            repeated (user, movie) pair or movie id, and a rating of a movie
            that the movie file does not list.
    """
    started = time.perf_counter()
    location = _locate(source)
    layout = _LAYOUTS[location.layout]
    ratings_file, movies_file = _read_source_files(source, location, layout)

    movies = _read_movies(movies_file, layout.movies)
    ratings = _read_ratings(ratings_file, layout.ratings, layout.scale)
    _check_movies_listed(ratings, movies, layout.movies.name)

    log.debug(
        "read %d ratings and %d movies (%s) from %s in %.2f s",
        len(ratings.frame),
        len(movies.frame),
        location.layout,
        source,
        time.perf_counter() - started,
    )
    return MovieLensData(location.layout, movies.frame, ratings.frame)


# Locating the files


def _locate(source: Path) -> _Location:
    """Find the one layout at the top level of ``source`` or in one subfolder."""
    listing = _list_source(source)
    layout = _match_layout(listing.pop(""), str(source))
    if layout is not None:
        return _Location(layout, "")

    found = []
    for folder, names in sorted(listing.items()):
        layout = _match_layout(names, str(source / folder))
        if layout is not None:
            found.append(_Location(layout, folder))

    if len(found) == 1:
        return found[0]
    if found:
        folders = ", ".join(location.folder for location in found)
        raise DataError(
            f"MovieLens files found in several subfolders ({folders}); "
            "pass one of these subfolders",
            path=str(source),
        )
    raise DataError(
        f"no MovieLens files found; looked for {_expected_files()} at the top "
        "level and in each subfolder; pass the folder or .zip file that "
        "contains them",
        path=str(source),
    )


def _expected_files() -> str:
    """List each layout's file names for error messages."""
    return ", ".join(
        f"{layout.ratings.name} and {layout.movies.name} ({name})"
        for name, layout in _LAYOUTS.items()
    )


def _list_source(source: Path) -> dict[str, set[str]]:
    """Map "" and each subfolder of a folder or zip archive to its file names."""
    if source.is_dir():
        return _list_folder(source)
    if source.is_file() and zipfile.is_zipfile(source):
        return _list_archive(source)
    if not source.exists():
        raise DataError(
            "not found; pass the folder or .zip file that contains the MovieLens files",
            path=str(source),
        )
    raise DataError(
        "is neither a folder nor a valid zip archive; pass the folder or .zip "
        "file that contains the MovieLens files",
        path=str(source),
    )


def _list_folder(folder: Path) -> dict[str, set[str]]:
    listing = {"": {path.name for path in folder.iterdir() if path.is_file()}}
    for subfolder in folder.iterdir():
        if subfolder.is_dir():
            files = {path.name for path in subfolder.iterdir() if path.is_file()}
            listing[subfolder.name] = files
    return listing


def _list_archive(archive_path: Path) -> dict[str, set[str]]:
    with zipfile.ZipFile(archive_path) as archive:
        members = archive.namelist()

    # Member names use "/". Deeper members and folder entries ("ml-1m/") are
    # ignored.
    listing: dict[str, set[str]] = {"": set()}
    for member in members:
        parts = member.split("/")
        if len(parts) == 1:
            listing[""].add(member)
        elif len(parts) == 2 and parts[1]:
            listing.setdefault(parts[0], set()).add(parts[1])
    return listing


def _match_layout(names: set[str], where: str) -> str | None:
    """Return the layout whose files are among ``names``, or None if none is.

    Raises:
        DataError: If files of several layouts are present, or only one of a
            layout's two files.
    """
    present = [
        name
        for name, layout in _LAYOUTS.items()
        if {layout.ratings.name, layout.movies.name} & names
    ]
    if not present:
        return None
    if len(present) > 1:
        raise DataError(
            f"contains files of several MovieLens layouts ({', '.join(present)}); "
            "keep one layout per folder",
            path=where,
        )

    layout = _LAYOUTS[present[0]]
    for fmt in (layout.ratings, layout.movies):
        if fmt.name not in names:
            raise DataError(
                f"{fmt.name} is missing; the {present[0]} layout needs both "
                f"{layout.ratings.name} and {layout.movies.name}",
                path=where,
            )
    return present[0]


def _read_source_files(
    source: Path, location: _Location, layout: _Layout
) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """Read the ratings file and the movie file as (display path, bytes) pairs."""
    members = [
        f"{location.folder}/{fmt.name}" if location.folder else fmt.name
        for fmt in (layout.ratings, layout.movies)
    ]
    if source.is_dir():
        ratings, movies = (_read_path(source / member) for member in members)
    else:
        ratings, movies = _read_members(source, members)
    return ratings, movies


def _read_path(path: Path) -> tuple[str, bytes]:
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot be read ({exc.strerror}); check that the file is readable",
            path=str(path),
        ) from exc


def _read_members(archive_path: Path, members: list[str]) -> list[tuple[str, bytes]]:
    """Read zip members in memory, with ``archive_path/member`` as display path."""
    files = []
    with zipfile.ZipFile(archive_path) as archive:
        for member in members:
            display_path = str(archive_path / member)
            try:
                files.append((display_path, archive.read(member)))
            except (zipfile.BadZipFile, zlib.error) as exc:
                raise DataError(
                    f"cannot be read from the archive ({exc}); download the "
                    "archive again",
                    path=display_path,
                ) from exc
    return files


# Parsing a file into a table


def _open_text(path: str, content: bytes, fmt: _FileFormat) -> _TextFile:
    """Check that a file is not empty, choose its encoding and check its header."""
    content = content.removeprefix(codecs.BOM_UTF8)
    if not content:
        raise DataError(
            f"the file is empty; restore {fmt.name} from the MovieLens release",
            path=path,
        )
    encoding = _detect_encoding(path, content, fmt)
    first_line = _check_header(path, content, encoding, fmt)
    return _TextFile(path, fmt, content, encoding, first_line)


def _detect_encoding(path: str, content: bytes, fmt: _FileFormat) -> str:
    """Return "utf-8" for valid UTF-8; otherwise ISO-8859-1, except for CSV files.

    Raises:
        DataError: If a CSV file is not valid UTF-8, naming the line.
    """
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not fmt.is_csv and not UTF8_MULTIBYTE.search(content):
            return "latin-1"
        if not fmt.is_csv:
            raise DataError(
                f"byte 0x{content[exc.start]:02X} is not valid UTF-8, but other "
                "lines are UTF-8, so the file mixes encodings; save all of "
                f"{fmt.name} as UTF-8 or all as ISO-8859-1",
                path=path,
                line=content.count(b"\n", 0, exc.start) + 1,
            ) from exc
        raise DataError(
            f"byte 0x{content[exc.start]:02X} is not valid UTF-8; save "
            f"{fmt.name} as UTF-8",
            path=path,
            line=content.count(b"\n", 0, exc.start) + 1,
        ) from exc
    return "utf-8"


def _check_header(path: str, content: bytes, encoding: str, fmt: _FileFormat) -> int:
    """Check the CSV header line and return the number of the first data line."""
    if fmt.header is None:
        return 1

    header_bytes, _, rest = content.partition(b"\n")
    header = header_bytes.decode(encoding).removesuffix("\r")
    if header != fmt.header:
        raise DataError(
            f"header {_shorten(header)!r} is not the expected {fmt.header!r}; fix "
            "the header line, or insert it if the file starts with data",
            path=path,
            line=1,
        )
    if not rest:
        raise DataError(
            "contains only the header line; restore the data lines from the "
            "MovieLens release",
            path=path,
        )
    return 2


def _parse(text: _TextFile) -> _Table:
    """Split the data lines of a file into fields.

    Raises:
        DataError: At the first blank line or line with a wrong field count.
    """
    frame = _read_frame(text)
    if frame is None:
        _check_lines(text)
        raise DataError(
            "pandas could not split the file into lines of "
            f"{len(text.fmt.columns)} fields; check its line endings and quotes",
            path=text.path,
        )
    return _Table(text, frame)


def _read_frame(text: _TextFile) -> pd.DataFrame | None:
    """Read the data lines with pandas' C parser, or return None if one is malformed.

    pandas pads a short line with empty fields. The value checks reject those,
    because the last field of every file must not be empty. A line with one
    field too many fills the ``_EXTRA`` column. With more than one, pandas
    raises, or warns and drops them when it is the first line. All of these
    count as malformed, and so does a line that ends with the separator, whose
    extra or last field is empty.
    """
    data, separator = _single_byte_separator(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            frame = _read_csv(data, separator, text)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError):
        return None

    if _has_malformed_lines(frame, data, separator, text.first_line):
        return None
    return frame.drop(columns=_EXTRA)


def _read_csv(data: bytes, separator: bytes, text: _TextFile) -> pd.DataFrame:
    # Numeric columns are inferred, not forced, so that a bad value stays in the
    # frame as a string for the value checks to report.
    return pd.read_csv(
        io.BytesIO(data),
        sep=separator.decode(),
        header=None,
        skiprows=text.first_line - 1,
        names=[*text.fmt.columns, _EXTRA],
        index_col=False,
        dtype=dict.fromkeys(text.fmt.text_columns, "str"),
        keep_default_na=False,
        na_values={_EXTRA: [""]},
        skip_blank_lines=False,
        quoting=csv.QUOTE_MINIMAL if text.fmt.is_csv else csv.QUOTE_NONE,
        encoding=text.encoding,
        engine="c",
    )


def _single_byte_separator(text: _TextFile) -> tuple[bytes, bytes]:
    """Return the data and separator, with "::" replaced by a single byte."""
    separator = text.fmt.separator.encode()
    if separator != b"::":
        return text.content, separator

    position = text.content.find(_SINGLE_BYTE_SEPARATOR)
    if position >= 0:
        raise DataError(
            "contains the control byte 0x1F, which MovieLens files never "
            "contain; remove it",
            path=text.path,
            line=text.content.count(b"\n", 0, position) + 1,
        )
    replaced = text.content.replace(separator, _SINGLE_BYTE_SEPARATOR)
    return replaced, _SINGLE_BYTE_SEPARATOR


def _has_malformed_lines(
    frame: pd.DataFrame, data: bytes, separator: bytes, first_line: int
) -> bool:
    """Return whether a line has extra fields or pandas made more or fewer rows."""
    line_count = data.count(b"\n") + (not data.endswith(b"\n"))
    if len(frame) != line_count - (first_line - 1):
        return True
    if frame[_EXTRA].notna().any():
        return True

    # A line that ends with the separator has an empty extra or last field.
    if data.endswith(separator) or separator + b"\n" in data:
        return True
    return b"\r" in data and separator + b"\r\n" in data


def _check_lines(text: _TextFile, last_line: int | None = None) -> None:
    """Raise DataError for the first malformed data line up to ``last_line``.

    This scan runs in Python, so it runs only after pandas' result or a value
    check has shown that something is wrong.
    """
    for number, line in enumerate(_iter_lines(text), start=1):
        if last_line is not None and number > last_line:
            return
        if number < text.first_line:
            continue
        problem = _line_problem(line, text.fmt)
        if problem is not None:
            raise DataError(problem, path=text.path, line=number)


def _iter_lines(text: _TextFile) -> Iterator[str]:
    """Yield each line split at "\\n", without its "\\r\\n" or "\\n" ending."""
    content = text.content
    start = 0
    while start < len(content):
        end = content.find(b"\n", start)
        if end < 0:
            end = len(content)
        yield content[start:end].decode(text.encoding).removesuffix("\r")
        start = end + 1


def _line_problem(line: str, fmt: _FileFormat) -> str | None:
    """Describe what is wrong with the layout of one line, or return None."""
    if not line:
        return "the line is blank; remove it"
    if "\r" in line:
        return (
            "the line contains a carriage return (\\r) before its end; save the "
            "file with \\n or \\r\\n line endings"
        )
    if fmt.is_csv and line.count('"') % 2:
        return f"{_shorten(line)!r} has an unmatched double quote; fix the quoting"

    field_count = _count_fields(line, fmt)
    if field_count != len(fmt.columns):
        quoted = fmt.is_csv and "title" in fmt.columns
        hint = "; titles that contain commas must be quoted" if quoted else ""
        return (
            f"expected {len(fmt.columns)} fields separated by {fmt.separator!r}, "
            f"found {field_count} in {_shorten(line)!r}{hint}; fix or remove the line"
        )
    if line.endswith(fmt.separator):
        return f"{fmt.columns[-1]} is empty; fill it in or remove the line"
    return None


def _count_fields(line: str, fmt: _FileFormat) -> int:
    if fmt.is_csv:
        return len(next(csv.reader([line])))
    return len(line.split(fmt.separator))


# Checking values


def _fail(table: _Table, row: int, message: str) -> NoReturn:
    """Raise DataError for a bad value in ``row``.

    A malformed line at or before that row is reported instead, because a
    missing or extra field is what usually makes a value look wrong.
    """
    line = table.text.first_line + row
    _check_lines(table.text, last_line=line)
    raise DataError(message, path=table.text.path, line=line)


def _first_row(mask: pd.Series) -> int:
    return int(np.argmax(mask.to_numpy()))


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: object) -> str:
    """Format a field value for a message: strings quoted, 6.0 as 6."""
    if isinstance(value, str):
        return repr(_shorten(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _not_numeric_message(table: _Table, row: int, column: str, value: object) -> str:
    if isinstance(value, str) and not value.strip():
        return f"{column} is empty; fill it in or remove the line"

    message = f"{column} {_show(value)} is not a number"
    if row == 0 and table.text.fmt.header is None:
        name = table.text.fmt.name
        return f"{message}; {name} has no header line, so remove this line if it is one"
    return f"{message}; fix or remove the line"


def _integer_values(
    table: _Table, column: str, minimum: int, requirement: str
) -> pd.Series:
    """Return a column as int64 after checking each value against ``minimum``.

    Each value must be an integer of at least ``minimum``, and
    ``requirement`` completes "... is not" in the error message.
    """
    values = table.frame[column]
    if values.dtype == np.int64 and (values.empty or values.min() >= minimum):
        return values

    # Slow path, taken only when some value is not an int64 >= minimum.
    numbers = pd.to_numeric(values, errors="coerce")
    too_large = numbers >= 2.0**63
    invalid = numbers.isna() | (numbers % 1 != 0) | (numbers < minimum) | too_large
    if not invalid.any():
        return numbers.astype("int64")

    row = _first_row(invalid)
    value = values.iloc[row]
    if pd.isna(numbers.iloc[row]):
        _fail(table, row, _not_numeric_message(table, row, column, value))
    if too_large.iloc[row]:
        requirement = "within the 64-bit integer range"
    _fail(
        table,
        row,
        f"{column} {_show(value)} is not {requirement}; fix or remove the line",
    )


def _id_values(table: _Table, column: str) -> pd.Series:
    return _integer_values(table, column, 1, "a positive integer")


def _rating_values(table: _Table, scale: _RatingScale) -> pd.Series:
    """Return the ratings as float64 after checking them against ``scale``."""
    values = table.frame["rating"]
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    steps = numbers / scale.step
    invalid = (
        numbers.isna()
        | (steps % 1 != 0)
        | (numbers < scale.minimum)
        | (numbers > scale.maximum)
    )
    if not invalid.any():
        return numbers

    row = _first_row(invalid)
    value = values.iloc[row]
    if pd.isna(numbers.iloc[row]):
        _fail(table, row, _not_numeric_message(table, row, "rating", value))
    _fail(
        table,
        row,
        f"rating {_show(value)} is outside the scale of {scale.description}; "
        "fix or remove the line",
    )


def _text_values(table: _Table, column: str) -> pd.Series:
    """Return a text column after checking that no value is empty."""
    values = table.frame[column]
    empty = values.isna() | (values == "")
    if empty.any():
        row = _first_row(empty)
        _fail(table, row, f"{column} is empty; fill it in or remove the line")
    return values.astype("str")


def _check_unique_ids(table: _Table, movie_ids: pd.Series) -> None:
    repeated = movie_ids.duplicated()
    if not repeated.any():
        return

    row = _first_row(repeated)
    movie_id = movie_ids.iloc[row]
    first_line = table.text.first_line + _first_row(movie_ids == movie_id)
    _fail(
        table,
        row,
        f"movie_id {movie_id} is listed again, first on line {first_line}; "
        "remove one of the two lines",
    )


def _check_unique_pairs(
    table: _Table, user_ids: pd.Series, movie_ids: pd.Series
) -> None:
    """Reject a second rating of the same movie by the same user."""
    keys = pair_keys(user_ids.to_numpy(), movie_ids.to_numpy())
    if keys is not None:
        repeated = pd.Series(keys, index=user_ids.index).duplicated()
    else:
        pairs = pd.DataFrame({"user_id": user_ids, "movie_id": movie_ids})
        repeated = pairs.duplicated()
    if not repeated.any():
        return

    row = _first_row(repeated)
    user_id, movie_id = user_ids.iloc[row], movie_ids.iloc[row]
    same_pair = (user_ids == user_id) & (movie_ids == movie_id)
    first_line = table.text.first_line + _first_row(same_pair)
    _fail(
        table,
        row,
        f"user {user_id} rated movie {movie_id} again, first on line "
        f"{first_line}; keep one of the two lines",
    )


# Movies and ratings


def _read_movies(source_file: tuple[str, bytes], fmt: _FileFormat) -> _Table:
    """Parse and check a movie file into ``movie_id``, ``title`` and ``genres``."""
    table = _parse(_open_text(*source_file, fmt))
    movie_ids = _id_values(table, "movie_id")
    titles = _text_values(table, "title")
    if fmt.name == "u.item":
        genres = _genres_from_flags(table)
    else:
        genres = _text_values(table, "genres").replace(_NO_GENRES, "")
    _check_unique_ids(table, movie_ids)

    frame = pd.DataFrame({"movie_id": movie_ids, "title": titles, "genres": genres})
    return _Table(table.text, frame)


def _genres_from_flags(table: _Table) -> pd.Series:
    """Join the names of the genres whose ``u.item`` flag is 1.

    The "unknown" flag means that no genre is known, so it adds no name, in the
    same way as ``(no genres listed)`` in the CSV layout.
    """
    flags = np.column_stack([_flag_values(table, genre) for genre in ML_100K_GENRES])
    known_genres = np.array(ML_100K_GENRES[1:])
    genres = ["|".join(known_genres[row[1:] == 1]) for row in flags]
    return pd.Series(genres, index=table.frame.index, dtype="str")


def _flag_values(table: _Table, genre: str) -> np.ndarray:
    values = table.frame[genre]
    numbers = pd.to_numeric(values, errors="coerce")
    invalid = ~numbers.isin([0, 1])
    if invalid.any():
        row = _first_row(invalid)
        value = values.iloc[row]
        if pd.isna(numbers.iloc[row]):
            _fail(
                table,
                row,
                _not_numeric_message(table, row, f"genre flag {genre!r}", value),
            )
        _fail(
            table,
            row,
            f"genre flag {genre!r} is {_show(value)}, expected 0 or 1; fix the line",
        )
    return numbers.to_numpy(dtype=np.int64)


def _read_ratings(
    source_file: tuple[str, bytes], fmt: _FileFormat, scale: _RatingScale
) -> _Table:
    """Parse and check a ratings file into the columns of ``MovieLensData``."""
    table = _parse(_open_text(*source_file, fmt))
    user_ids = _id_values(table, "user_id")
    movie_ids = _id_values(table, "movie_id")
    ratings = _rating_values(table, scale)
    rated_at = _integer_values(
        table, "timestamp", 0, "a non-negative integer (Unix seconds)"
    )
    _check_unique_pairs(table, user_ids, movie_ids)

    frame = pd.DataFrame(
        {
            "user_id": user_ids,
            "movie_id": movie_ids,
            "rating": ratings,
            "rated_at": rated_at,
        }
    )
    return _Table(table.text, frame)


def _check_movies_listed(ratings: _Table, movies: _Table, movies_name: str) -> None:
    """Reject a rating of a movie that the movie file does not list."""
    movie_ids = ratings.frame["movie_id"]
    unlisted = ~movie_ids.isin(movies.frame["movie_id"])
    if unlisted.any():
        row = _first_row(unlisted)
        _fail(
            ratings,
            row,
            f"movie_id {movie_ids.iloc[row]} is not listed in {movies_name}; add "
            f"the movie to {movies_name} or remove the line",
        )

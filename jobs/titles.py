"""Resolve movie titles as people type them to ``movie_id`` values.

A title matches by these rules, in order of preference:

1. exactly;
2. ignoring case, accents and spacing;
3. with a leading article moved to the end as MovieLens writes it
   (``The Terminator (1984)`` is ``Terminator, The (1984)``);
4. when the query has no year, by its name alone.

The first rule that matches anything decides. More than one movie there is
an ambiguity, never a silent pick.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from jobs.errors import DataError

# Leading articles that MovieLens moves behind the title ("Jaws, The").
ARTICLES = (
    "the", "a", "an", "les", "la", "le", "l'", "il", "el", "los", "las",
    "die", "der", "das", "den", "det", "de", "lo", "gli", "un", "une", "i",
)  # fmt: skip
YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
SPACES = re.compile(r"\s+")
# Most suggestions listed for an unknown title.
MAX_SUGGESTIONS = 5


@dataclass(frozen=True)
class Movie:
    """A catalogue entry as title lookups see it."""

    movie_id: int
    title: str


class TitleIndex:
    """Lookup tables over a catalogue, built once per command."""

    def __init__(self, movies: Iterable[Movie]):
        self.exact: dict[str, list[Movie]] = defaultdict(list)
        self.folded: dict[str, list[Movie]] = defaultdict(list)
        self.canonical: dict[str, list[Movie]] = defaultdict(list)
        self.name_only: dict[str, list[Movie]] = defaultdict(list)
        self.titles: dict[int, str] = {}
        for movie in movies:
            self.titles[movie.movie_id] = movie.title
            name, year = split_year(movie.title)
            self.exact[movie.title].append(movie)
            self.folded[fold(movie.title)].append(movie)
            self.canonical[canonical_title(movie.title)].append(movie)
            self.name_only[canonical_name(name)].append(movie)

    def by_id(self, movie_id: int) -> Movie | None:
        """Return the movie with ``movie_id``, or None when there is none."""
        title = self.titles.get(movie_id)
        return None if title is None else Movie(movie_id, title)

    def title_of(self, movie_id: int) -> str:
        """Return the title of ``movie_id``, or a placeholder naming the id."""
        return self.titles.get(movie_id, f"(movie_id {movie_id}, no longer listed)")

    def resolve(self, query: str) -> Movie:
        """Return the one movie that ``query`` names.

        Raises:
            DataError: no movie matches (with the closest titles), or several do
                (with each candidate's title and movie_id).
        """
        matches = self.candidates(query)
        if len(matches) == 1:
            return matches[0]
        if matches:
            listed = "; ".join(f"{m.title} (movie_id {m.movie_id})" for m in matches)
            raise DataError(
                f"title {query!r} matches {len(matches)} movies: {listed}; "
                "pass the one you mean with --movie-id"
            )
        raise DataError(f"title {query!r} not found{self._suggestions(query)}")

    def candidates(self, query: str) -> list[Movie]:
        """Return the movies of the first matching rule, or an empty list."""
        name, year = split_year(query)
        rules = [
            self.exact.get(query.strip()),
            self.folded.get(fold(query)),
            self.canonical.get(canonical_title(query)),
        ]
        if year is None:
            rules.append(self.name_only.get(canonical_name(name)))
        for found in rules:
            if found:
                return sorted(found, key=lambda movie: movie.movie_id)
        return []

    def _suggestions(self, query: str) -> str:
        if not self.exact:
            return (
                "; the movies table is empty, so load data first: "
                "python -m jobs ingest DIR"
            )
        key = canonical_title(query)
        close = difflib.get_close_matches(
            key, self.canonical, n=MAX_SUGGESTIONS, cutoff=0.6
        )
        if not close:
            # A short query such as 'Star Wars' is far from every long title
            # by edit distance, but is contained in the ones meant.
            name = canonical_name(split_year(query)[0])
            close = sorted(k for k in self.canonical if name and name in k)
        if not close:
            return "; check the spelling and the year, e.g. 'Jaws (1975)'"
        titles = [movie.title for key in close for movie in self.canonical[key]]
        return "; did you mean: " + "; ".join(titles[:MAX_SUGGESTIONS])


def fold(title: str) -> str:
    """Lower-case ``title``, drop its accents and collapse its white space."""
    decomposed = unicodedata.normalize("NFKD", title)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return SPACES.sub(" ", bare).strip().casefold()


def split_year(title: str) -> tuple[str, str | None]:
    """Split ``'Jaws (1975)'`` into ``('Jaws', '1975')``; the year may be absent."""
    match = YEAR.search(title)
    if match is None:
        return title.strip(), None
    return title[: match.start()].strip(), match.group(1)


def canonical_name(name: str) -> str:
    """Fold ``name`` and move a leading article to the end: ``'jaws, the'``."""
    folded = fold(name)
    for article in ARTICLES:
        prefix = article if article.endswith("'") else article + " "
        if folded.startswith(prefix) and len(folded) > len(prefix):
            return f"{folded[len(prefix) :].strip()}, {article}"
    return folded


def canonical_title(title: str) -> str:
    """Return the lookup key of a full title: canonical name plus year."""
    name, year = split_year(title)
    key = canonical_name(name)
    return f"{key} ({year})" if year else key

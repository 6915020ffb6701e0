"""``demo``: from an empty database to printed recommendations in one command.

The data comes from, in order: ``--movielens-dir``, ``MOVIELENS_DIR``, a
cached or freshly downloaded ``ml-1m.zip`` from GroupLens (checked against
GroupLens' published MD5), and, when none of those is available, a synthetic
MovieLens-shaped data set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from db import migrate
from db.engine import mask_url
from jobs import favorites, published
from jobs.config import Settings
from jobs.errors import DataError
from jobs.ingest import ingest
from jobs.run import run_once
from jobs.synthetic import write_synthetic_movielens

log = logging.getLogger(__name__)

ML_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# GroupLens publishes this checksum next to the archive, as ml-1m.zip.md5.
ML_1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
DOWNLOAD_TIMEOUT_SECONDS = 30

DEMO_USER = "demo"
DEMO_FAVORITES = (
    "Toy Story (1995)",
    "Back to the Future (1985)",
    "Terminator, The (1984)",
    "Men in Black (1997)",
    "Jurassic Park (1993)",
)
DEMO_SIMILAR_TO = "Jaws (1975)"
DEMO_LIST_LENGTH = 10


@dataclass(frozen=True)
class DemoSource:
    """The demo's data source: a path and how it was obtained."""

    path: Path
    description: str
    synthetic: bool = False


def run_demo(
    engine: Engine,
    settings: Settings,
    out: TextIO,
    movielens_dir: Path | None = None,
    download: bool = True,
) -> None:
    """Migrate, ingest, add the demo user, run the job and print the lists."""
    migrate.upgrade(engine)
    with tempfile.TemporaryDirectory(prefix="movie-recs-demo-") as scratch:
        source = locate_data(movielens_dir, download, Path(scratch))
        if source.synthetic:
            _warn_synthetic(out)
        print(f"Loading {source.description}", file=out)
        try:
            ingest(engine, source.path)
        except DataError as exc:
            raise DataError(
                f"{exc}. The demo needs an empty database or one loaded from the "
                f"same files, and {mask_url(engine.url)} holds other data: delete "
                "it, or pass --database-url with a new database"
            ) from exc

    added = favorites.add_favorites(engine, DEMO_USER, DEMO_FAVORITES)
    print(f"User {DEMO_USER!r} (user_id {added.user_id}) likes:", file=out)
    for title in DEMO_FAVORITES:
        print(f"  {title}", file=out)

    summary = run_once(engine, settings)
    print(
        f"Run {summary.run_id} published in {summary.timings['total']:.1f} s.", file=out
    )
    _print_lists(engine, out)
    if source.synthetic:
        _warn_synthetic(out)


def _print_lists(engine: Engine, out: TextIO) -> None:
    user_id, movies = published.user_recommendations(
        engine, DEMO_USER, DEMO_LIST_LENGTH
    )
    print(f"\nTop {DEMO_LIST_LENGTH} for {DEMO_USER!r} (user_id {user_id}):", file=out)
    for movie in movies:
        reason = f"  (because you liked {movie.because})" if movie.because else ""
        print(f"  {movie.rank:2d}. {movie.title}{reason}", file=out)
    _, title, similar = published.similar_movies(
        engine, DEMO_SIMILAR_TO, DEMO_LIST_LENGTH
    )
    print(f"\nMovies similar to {title}:", file=out)
    for movie in similar:
        print(f"  {movie.rank:2d}. {movie.title}", file=out)


def _warn_synthetic(out: TextIO) -> None:
    print(
        "\n*** SYNTHETIC DATA: the real MovieLens 1M files were not given and could "
        "not be downloaded, so this demo runs on generated data and its lists mean "
        "nothing.\n*** To use the real data, download "
        f"{ML_1M_URL}, unzip it, and run again with MOVIELENS_DIR set to the folder "
        "that contains ml-1m/ (or pass --movielens-dir).\n",
        file=out,
    )


def locate_data(
    movielens_dir: Path | None, download: bool, scratch: Path
) -> DemoSource:
    """Find the demo's data set, downloading or generating it when needed."""
    chosen = movielens_dir or _env_dir()
    if chosen is not None:
        return DemoSource(_ml_1m_folder(chosen), f"MovieLens 1M from {chosen}")
    cached = cache_dir() / "ml-1m.zip"
    if cached.is_file() and _md5(cached) == ML_1M_MD5:
        return DemoSource(cached, f"MovieLens 1M from {cached}")
    if download:
        try:
            fetch_ml_1m(ML_1M_URL, cached, ML_1M_MD5)
            return DemoSource(cached, f"MovieLens 1M downloaded to {cached}")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            log.warning("could not download %s: %s", ML_1M_URL, exc)
    generated = write_synthetic_movielens(scratch / "synthetic-ml-1m")
    return DemoSource(generated, "synthetic MovieLens-shaped data", synthetic=True)


def _env_dir() -> Path | None:
    value = os.environ.get("MOVIELENS_DIR")
    return Path(value) if value else None


def _ml_1m_folder(path: Path) -> Path:
    """Accept the ml-1m folder itself or a folder that contains ``ml-1m/``."""
    nested = path / "ml-1m"
    return nested if nested.is_dir() else path


def cache_dir() -> Path:
    """Return the download cache: ``$XDG_CACHE_HOME/movie-recs`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "movie-recs"


def fetch_ml_1m(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` and check its MD5; leave nothing on failure.

    Raises:
        ValueError: the checksum does not match.
        OSError, urllib.error.URLError: the download failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            with partial.open("wb") as stream:
                shutil.copyfileobj(response, stream)
        actual = _md5(partial)
        if actual != md5:
            raise ValueError(f"{url}: MD5 {actual} does not match the expected {md5}")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Shared fixtures: a real SQLite file and a real PostgreSQL server per test.

The ``backend`` parameter runs each database test on both. PostgreSQL comes
from ``MOVIE_RECS_TEST_POSTGRES_URL``, the URL of a role that may create
databases, or else from a throwaway server started for the session. Without
server binaries the PostgreSQL cases are skipped, unless
``MOVIE_RECS_REQUIRE_POSTGRES=1`` (set by CI) turns that into a failure.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from db import migrate
from db.engine import make_engine
from pg_server import INSTALL_HINT, find_postgres_bin, start_postgres

BACKENDS = ("sqlite", "postgresql")
_database_numbers = itertools.count(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        action="append",
        help="run database tests only on this backend (repeatable; default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend") or list(BACKENDS)
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:
            chosen = [backend for backend in chosen if backend in only.args]
        metafunc.parametrize("backend", chosen, scope="session")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL role that may create databases."""
    external = os.environ.get("MOVIE_RECS_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    if find_postgres_bin() is None:
        message = f"PostgreSQL server binaries not found. {INSTALL_HINT}"
        if os.environ.get("MOVIE_RECS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> str:
    """Name of a migrated PostgreSQL database that tests copy."""
    name = f"movie_recs_template_{os.getpid()}"
    _create_postgres_database(postgres_admin_url, name)
    engine = make_engine(_postgres_url(postgres_admin_url, name), poolclass=NullPool)
    migrate.upgrade(engine)
    engine.dispose()
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that tests copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}", poolclass=NullPool)
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a new, empty database (no tables) on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'recs.db'}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    return _new_postgres_database(admin_url, template=None)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a new database migrated to the head revision, on ``backend``."""
    return new_migrated_database(backend, request, tmp_path)


def new_migrated_database(
    backend: str, request: pytest.FixtureRequest, folder: Path
) -> str:
    """Create a migrated database on ``backend`` (SQLite files go in ``folder``)."""
    if backend == "sqlite":
        path = folder / "recs.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    template = request.getfixturevalue("postgres_template")
    return _new_postgres_database(admin_url, template=template)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated database; disposed after the test."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The folder with ``ml-1m/``, from ``MOVIELENS_DIR``; skips when unset."""
    value = os.environ.get("MOVIELENS_DIR")
    if not value:
        pytest.skip("MOVIELENS_DIR is not set; it names the folder containing ml-1m/")
    folder = Path(value)
    if not (folder / "ml-1m" / "ratings.dat").is_file():
        pytest.fail(f"MOVIELENS_DIR={value} has no ml-1m/ratings.dat")
    return folder


def _new_postgres_database(admin_url: str, template: str | None) -> str:
    name = f"movie_recs_test_{os.getpid()}_{next(_database_numbers)}"
    _create_postgres_database(admin_url, name, template)
    return _postgres_url(admin_url, name)


def _create_postgres_database(
    admin_url: str, name: str, template: str | None = None
) -> None:
    clause = f" TEMPLATE {template}" if template else ""
    admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}{clause}"))
    admin.dispose()


def _postgres_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

"""Tests for the throwaway PostgreSQL server in pg_server.py.

Tests that need the server binaries are skipped when none are found, unless
``MOVIE_RECS_REQUIRE_POSTGRES=1`` turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, exc, make_url, text
from sqlalchemy.pool import NullPool

import pg_server
from pg_server import (
    INSTALL_HINT,
    PostgresServer,
    PostgresServerError,
    find_postgres_bin,
    start_postgres,
)

REQUIRE_POSTGRES_ENV = "MOVIE_RECS_REQUIRE_POSTGRES"


def _require_postgres_bin() -> Path:
    bin_dir = find_postgres_bin()
    if bin_dir is not None:
        return bin_dir
    message = f"PostgreSQL server binaries not found. {INSTALL_HINT}"
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1, but {message}", pytrace=False)
    pytest.skip(message)


def _scalar(url: str, sql: str) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    _require_postgres_bin()
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def shared_base_dir() -> Iterator[Path]:
    """Folder that the user ``postgres`` can enter even when tests run as root.

    pytest's ``tmp_path`` lies under a folder private to the current user.
    """
    base_dir = Path(tempfile.mkdtemp(prefix="movie-recs-pg-test-"))
    base_dir.chmod(0o755)
    yield base_dir
    shutil.rmtree(base_dir, ignore_errors=True)


def test_create_database_returns_working_urls(server: PostgresServer) -> None:
    names = ["recs_one", "Recs-Two"]

    urls = [server.create_database(name) for name in names]

    assert urls[0] != urls[1]
    for name, url in zip(names, urls, strict=True):
        assert make_url(url).database == name
        assert _scalar(url, "SELECT current_database()") == name


def test_server_version_at_least_15(server: PostgresServer) -> None:
    url = server.create_database("recs_version")

    sql = "SELECT current_setting('server_version_num')::int >= 150000"
    assert _scalar(url, sql) is True


def test_server_listens_on_socket_only(server: PostgresServer) -> None:
    assert _scalar(server.url, "SHOW listen_addresses") == ""
    assert make_url(server.url).query["host"] == str(server.data_dir)
    assert list(server.data_dir.glob(".s.PGSQL.*"))


def test_server_url_connects_as_superuser(server: PostgresServer) -> None:
    assert _scalar(server.url, "SELECT current_user") == pg_server.SERVER_USER
    assert _scalar(server.url, "SHOW is_superuser") == "on"


def test_server_durability_settings_off(server: PostgresServer) -> None:
    for name in ["fsync", "synchronous_commit", "full_page_writes"]:
        assert _scalar(server.url, f"SHOW {name}") == "off", name


def test_create_database_rejects_invalid_names(server: PostgresServer) -> None:
    for name in ["", "a" * 64, "é" * 32, "nul\0name"]:
        with pytest.raises(ValueError, match="database name"):
            server.create_database(name)


def test_create_database_rejects_duplicate(server: PostgresServer) -> None:
    server.create_database("recs_duplicate")

    with pytest.raises(exc.ProgrammingError, match="already exists"):
        server.create_database("recs_duplicate")


def test_stop_removes_data_dir_twice_safely() -> None:
    _require_postgres_bin()
    server = start_postgres()
    assert server.data_dir.is_dir()

    server.stop()

    assert not server.data_dir.exists()
    with pytest.raises(exc.OperationalError):
        _scalar(server.url, "SELECT 1")
    server.stop()
    assert not server.data_dir.exists()


def test_create_database_after_stop_raises() -> None:
    _require_postgres_bin()
    server = start_postgres()
    server.stop()

    with pytest.raises(PostgresServerError, match="was stopped"):
        server.create_database("recs_late")


def test_start_failure_reports_server_log(
    shared_base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_postgres_bin()
    settings = {**pg_server._SERVER_SETTINGS, "shared_buffers": "not-a-size"}
    monkeypatch.setattr(pg_server, "_SERVER_SETTINGS", settings)

    with pytest.raises(PostgresServerError) as raised:
        start_postgres(shared_base_dir)

    assert 'invalid value for parameter "shared_buffers"' in str(raised.value)
    assert list(shared_base_dir.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the folder over")
def test_start_rejects_base_dir_private_to_root(tmp_path: Path) -> None:
    _require_postgres_bin()
    private_dir = tmp_path / "private"
    private_dir.mkdir(mode=0o700)

    with pytest.raises(PostgresServerError, match="cannot write to"):
        start_postgres(private_dir)

    assert list(private_dir.iterdir()) == []


def test_start_without_binaries_names_apt_get(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_server, "find_postgres_bin", lambda: None)

    with pytest.raises(PostgresServerError, match="apt-get install -y postgresql"):
        start_postgres()


def test_start_rejects_comma_in_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_server, "find_postgres_bin", lambda: tmp_path)

    with pytest.raises(PostgresServerError, match="comma"):
        start_postgres(tmp_path / "a,b")


def test_find_postgres_bin_uses_pg_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg_server.PG_BIN_ENV, raising=False)
    bin_dir = _require_postgres_bin()
    monkeypatch.setenv(pg_server.PG_BIN_ENV, str(bin_dir))

    assert find_postgres_bin() == bin_dir


def test_find_postgres_bin_rejects_bad_pg_bin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pg_server.PG_BIN_ENV, str(tmp_path))

    with pytest.raises(PostgresServerError, match=pg_server.PG_BIN_ENV):
        find_postgres_bin()

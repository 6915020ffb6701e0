"""Command-line usage errors: each exits with its documented status."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.engine import make_engine
from helpers import seed_two_groups
from jobs.cli import main


@pytest.fixture
def seeded_url(database_url: str) -> str:
    engine = make_engine(database_url)
    seed_two_groups(engine)
    engine.dispose()
    return database_url


def run(url: str, *args: str) -> int:
    return main(["-q", "--database-url", url, *args])


def test_favorites_add_without_movies(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(seeded_url, "favorites", "add", "zoe") == 2
    assert "at least one TITLE or --movie-id" in capsys.readouterr().err


def test_recommend_before_any_run(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(seeded_url, "recommend", "1") == 4
    assert "no run has been published yet" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_recommend_rejects_bad_n(seeded_url: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(seeded_url, "recommend", "1", "-n", value)
    assert exit_info.value.code == 2


def test_similar_by_movie_id(
    seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "small.toml"
    config.write_text("[output]\nsimilar_min_support = 2\n", encoding="utf-8")
    assert run(seeded_url, "--config", str(config), "run-once") == 0
    capsys.readouterr()
    assert run(seeded_url, "similar", "--movie-id", "3", "-n", "2") == 0
    out = capsys.readouterr().out
    assert "movies similar to Movie 3 (2000) (movie_id 3" in out
    assert len([line for line in out.splitlines() if ". Movie" in line]) == 2


def test_similar_unknown_movie_id(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(seeded_url, "run-once") == 0
    assert run(seeded_url, "similar", "--movie-id", "999") == 3
    assert "movie_id 999 not found" in capsys.readouterr().err


@pytest.mark.backends("sqlite")
def test_unknown_revision_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert run(url, "db", "upgrade", "9999") == 2
    err = capsys.readouterr().err
    assert "unknown revision '9999'" in err
    assert "0001" in err


def test_version_names_product(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("movie-recs ")


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    "command", [["run-once"], ["db", "current"], ["recommend", "1"], ["refresh"]]
)
def test_missing_sqlite_file_not_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MOVIE_RECS_CONFIG", raising=False)
    assert main(["-q", *command]) == 6
    err = capsys.readouterr().err
    assert f"database file {tmp_path / 'movie_recs.db'} does not exist" in err
    assert not (tmp_path / "movie_recs.db").exists()

"""The command line as users run it: entry points, help, errors, exit statuses."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db import migrate
from jobs.cli import build_parser, main

BIN = Path(sys.executable).parent


def run_command(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command the way a user or cron would, and capture its output."""
    full_env = dict(os.environ)
    full_env.pop("DATABASE_URL", None)
    full_env.pop("MOVIE_RECS_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "entry",
    [
        [sys.executable, "-m", "jobs"],
        [str(BIN / "jobs")],
        [str(BIN / "movie-recs")],
    ],
    ids=["python-m-jobs", "jobs-by-path", "movie-recs"],
)
def test_entry_points_migrate(entry: list[str], tmp_path: Path) -> None:
    result = run_command([*entry, "db", "upgrade"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"is at revision {migrate.head_revision()}" in result.stdout
    assert (tmp_path / "movie_recs.db").is_file()


def test_database_url_flag_after_command(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    result = run_command(
        [
            sys.executable,
            "-m",
            "jobs",
            "db",
            "upgrade",
            "--database-url",
            f"sqlite:///{target}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert target.is_file()
    assert not (tmp_path / "movie_recs.db").exists()


def test_database_url_env_is_used(tmp_path: Path) -> None:
    target = tmp_path / "from-env.db"
    result = run_command(
        [sys.executable, "-m", "jobs", "db", "upgrade"],
        cwd=tmp_path,
        env={"DATABASE_URL": f"sqlite:///{target}"},
    )
    assert result.returncode == 0, result.stderr
    assert target.is_file()


def test_run_once_on_unmigrated_database(tmp_path: Path) -> None:
    result = run_command([sys.executable, "-m", "jobs", "run-once"], cwd=tmp_path)
    assert result.returncode == 6
    assert "python -m jobs db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_once_on_empty_database(tmp_path: Path) -> None:
    assert main(["--database-url", f"sqlite:///{tmp_path}/e.db", "db", "upgrade"]) == 0
    status = main(["--database-url", f"sqlite:///{tmp_path}/e.db", "run-once"])
    assert status == 4


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[output]\nn = -3\n", encoding="utf-8")
    status = main(["--config", str(config), "run-once"])
    err = capsys.readouterr().err
    assert status == 2
    assert "n = -3: must be at least 1" in err


def test_password_never_printed(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bob:hunter2@127.0.0.1:1/none?connect_timeout=2"
    result = run_command(
        [sys.executable, "-m", "jobs", "-v", "run-once", "--database-url", url],
        cwd=tmp_path,
    )
    assert result.returncode == 6
    assert "hunter2" not in result.stderr
    assert "hunter2" not in result.stdout


def test_exit_statuses_in_help() -> None:
    help_text = build_parser().format_help()
    for status in range(8):
        assert f"\n  {status}  " in help_text


def iter_parsers(
    parser: argparse.ArgumentParser, path: str = "jobs"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += iter_parsers(child, f"{path} {name}")
    return found


def test_every_option_has_help() -> None:
    missing = []
    for path, parser in iter_parsers(build_parser()):
        if not parser.description:
            missing.append(f"{path}: description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}: help")
            elif not action.help:
                missing.append(f"{path} {action.dest}: help")
    assert missing == []


def test_every_command_prints_help() -> None:
    for path, _parser in iter_parsers(build_parser()):
        args = path.split()[1:]
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--help"])
        assert exit_info.value.code == 0, path

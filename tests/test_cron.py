"""Cron expressions and time zones of [schedule], checked when settings load."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.config import load_settings
from jobs.cron import InvalidSchedule, cron_trigger, resolve_timezone
from jobs.errors import ConfigError

UTC = ZoneInfo("UTC")
# A Monday.
MONDAY = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def next_fires(expression: str, count: int, start: datetime = MONDAY) -> list[str]:
    trigger = cron_trigger(expression, UTC)
    fires = []
    previous = None
    now = start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire.strftime("%a %H:%M"))
        previous, now = fire, fire
    return fires


def test_daily_expression_fires_at_three() -> None:
    assert next_fires("0 3 * * *", 2) == ["Tue 03:00", "Wed 03:00"]


@pytest.mark.parametrize(
    ("day_of_week", "expected"),
    [
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("sun", ["Sun"]),
        ("1-5", ["Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("MON-fri", ["Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("*/2", ["Tue", "Thu", "Sat", "Sun"]),
        ("5-7", ["Fri", "Sat", "Sun"]),
        ("1,3", ["Wed", "Mon"]),
    ],
)
def test_weekdays_count_from_sunday(day_of_week: str, expected: list[str]) -> None:
    fires = next_fires(f"30 4 * * {day_of_week}", len(expected))
    assert [fire.split()[0] for fire in fires] == expected
    assert {fire.split()[1] for fire in fires} == {"04:30"}


def test_time_zone_shifts_fire_time() -> None:
    trigger = cron_trigger("0 3 * * *", ZoneInfo("Europe/Berlin"))
    fire = trigger.get_next_fire_time(None, MONDAY)
    assert fire is not None
    assert fire.astimezone(UTC).strftime("%d %H:%M") == "08 02:00"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("0 3 * * * *", "expected 5 fields"),
        ("61 3 * * *", "higher than the maximum value (59)"),
        ("0 25 * * *", "higher than the maximum value (23)"),
        ("0 3 1 * 1", "both day-of-month and day-of-week"),
        ("0 3 * * 8", "day-of-week '8' is invalid"),
        ("0 3 * * 5-1", "runs backwards"),
        ("0 3 * * 1/2", "a step needs * or a range"),
        ("0 3 * * */0", "not a positive integer"),
        ("x 3 * * *", "Unrecognized expression"),
    ],
)
def test_invalid_expression_rejected(expression: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=re.escape(message)):
        cron_trigger(expression, UTC)


def test_local_timezone_resolves() -> None:
    zone = resolve_timezone("local")
    assert zone.utcoffset(datetime(2026, 1, 1)) is not None


def test_unknown_timezone_rejected() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        resolve_timezone("Mars/Olympus")


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_schedule_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    schedule = load_settings(environ={}).schedule
    assert schedule.cron == "0 3 * * *"
    assert schedule.timezone == "local"
    assert schedule.misfire_grace_seconds == 3600
    assert schedule.refresh_minutes == 5.0
    assert schedule.retries == 3
    assert schedule.retry_backoff_seconds == 30.0


def test_shipped_config_matches_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Path(__file__).resolve().parent.parent / "config.toml"
    monkeypatch.chdir(shipped.parent)
    from_file = load_settings(shipped, environ={}).schedule
    monkeypatch.chdir("/")
    assert from_file == load_settings(environ={}).schedule


def test_schedule_values_are_read(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[schedule]\ncron = "15 2 * * 1-5"\ntimezone = "Europe/Berlin"\n'
        "refresh_minutes = 1\nretries = 0\n",
    )
    schedule = load_settings(path, environ={}).schedule
    assert schedule.cron == "15 2 * * 1-5"
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.refresh_minutes == 1.0
    assert isinstance(schedule.refresh_minutes, float)
    assert schedule.retries == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('cron = "0 3 * *"', "[schedule] cron = '0 3 * *': invalid cron expression"),
        ('cron = "0 3 * * 9"', "[schedule] cron = '0 3 * * 9': invalid cron"),
        ('timezone = "Mars/Olympus"', "[schedule] timezone = 'Mars/Olympus'"),
        ("refresh_minutes = 0", "refresh_minutes = 0.0: must be greater than 0"),
        ("retries = -1", "retries = -1: must be at least 0"),
        ("misfire_grace_seconds = 0", "misfire_grace_seconds = 0: must be at least 1"),
        ('retries = "3"', "retries = '3': expected an integer"),
        ("every = 5", "unknown key 'every'"),
    ],
)
def test_invalid_schedule_rejected(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, f"[schedule]\n{body}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert expected in str(error.value)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("command", ["schedule", "refresh", "run-once"])
def test_bad_cron_exits_2_before_work(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, '[schedule]\ncron = "0 3 * *"\n')
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "--config", str(config), command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cron = '0 3 * *': invalid cron expression" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "movie_recs.db").exists()

"""Settings: code defaults < ``config.toml`` < environment < command-line flags.

``config.toml`` is read once into frozen dataclasses. Every key is optional;
an unknown section or key, or a value of the wrong type or range, is a
``ConfigError`` that names it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from db.engine import InvalidDatabaseURL, mask_url, parse_url
from jobs.cron import InvalidSchedule, cron_trigger, resolve_timezone
from jobs.errors import ConfigError

DEFAULT_CONFIG_FILE = "config.toml"
CONFIG_ENV = "MOVIE_RECS_CONFIG"
DATABASE_URL_ENV = "DATABASE_URL"


@dataclass(frozen=True)
class DatabaseSettings:
    """Database location."""

    # A SQLAlchemy URL; a relative SQLite path is relative to the working directory.
    url: str = "sqlite:///movie_recs.db"


@dataclass(frozen=True)
class ModelSettings:
    """Interaction weighting and ALS training settings."""

    # Ratings below this are not a sign of liking and are left out of training.
    min_rating: float = 3.0
    # Confidence of a favorite; a favorited pair gets max(rating, favorite_weight).
    favorite_weight: float = 5.0
    factors: int = 64
    regularization: float = 60.0
    alpha: float = 1.0
    iterations: int = 10
    random_state: int = 42
    # How a positive's strength becomes confidence: "rating", "binary" or
    # "bm25" (see jobs/confidence.py).
    confidence: str = "rating"


@dataclass(frozen=True)
class EvaluationSettings:
    """The holdout that measures each run (see jobs/evaluate.py)."""

    # Whether run-once measures the model on a holdout before publishing.
    enabled: bool = True
    # List length the metrics are taken at.
    k: int = 10
    # Share of the positives hidden from the holdout model.
    test_fraction: float = 0.2
    # Seed of the split, so that runs on the same data are comparable.
    random_state: int = 42
    # Users scored at most: beyond this many users with a hidden positive, a
    # sample seeded like the split is scored, which bounds the cost of
    # ranking on large data.
    max_users: int = 10_000


@dataclass(frozen=True)
class OutputSettings:
    """List lengths, similar-list support and the number of runs kept."""

    # Recommendations per user.
    n: int = 20
    # Similar movies per movie.
    similar_n: int = 15
    # Positive interactions a movie needs to get, or appear in, a similar list.
    similar_min_support: int = 20
    # Succeeded runs whose result rows are kept (the published one included).
    keep_runs: int = 3


@dataclass(frozen=True)
class ScheduleSettings:
    """Times and retries of ``jobs schedule``: the main job and the refresh."""

    # Five-field crontab expression of the main job (retrain and publish).
    cron: str = "0 3 * * *"
    # IANA time zone of the cron expression; "local" is the machine's zone.
    timezone: str = "local"
    # A main job that cannot start within this many seconds of its time is skipped.
    misfire_grace_seconds: int = 3600
    # Minutes between refreshes of the lists of users whose inputs changed.
    refresh_minutes: float = 5.0
    # Retries after a transient database error; the first wait is
    # retry_backoff_seconds and each further wait doubles.
    retries: int = 3
    retry_backoff_seconds: float = 30.0


@dataclass(frozen=True)
class Settings:
    """All settings of one invocation."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    # The file the settings came from, or None when only defaults apply.
    source: Path | None = None


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "model": ModelSettings,
    "output": OutputSettings,
    "evaluation": EvaluationSettings,
    "schedule": ScheduleSettings,
}

# Lower bounds of numeric settings, with True where the bound is inclusive.
MINIMUMS: dict[str, tuple[float, bool]] = {
    "min_rating": (0.0, True),
    "favorite_weight": (0.0, False),
    "factors": (1, True),
    "regularization": (0.0, True),
    "alpha": (0.0, False),
    "iterations": (1, True),
    "random_state": (0, True),
    "n": (1, True),
    "similar_n": (1, True),
    "similar_min_support": (1, True),
    "keep_runs": (1, True),
    "misfire_grace_seconds": (1, True),
    "refresh_minutes": (0.0, False),
    "retries": (0, True),
    "retry_backoff_seconds": (0.0, True),
    "k": (1, True),
    "test_fraction": (0.0, False),
    "max_users": (1, True),
}

# Upper bounds (inclusive). Stars stop at 5; the others are far beyond any
# useful value and stop a typo from exhausting memory (factors = 100000000
# would ask for a dense array of that width per user).
MAXIMUMS: dict[str, float] = {
    "min_rating": 5.0,
    "factors": 2_048,
    "iterations": 1_000,
    "n": 1_000,
    "similar_n": 1_000,
    "k": 1_000,
    "test_fraction": 0.5,
}

# Settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "confidence": ("rating", "binary", "bm25"),
}


def load_settings(
    config_path: str | Path | None = None,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load and validate the settings of one invocation.

    Args:
        config_path: ``--config`` flag; else ``MOVIE_RECS_CONFIG``, else
            ``config.toml`` in the working directory when it exists.
        database_url: ``--database-url`` flag; overrides ``DATABASE_URL``,
            which overrides ``[database] url``.
        environ: the environment; ``os.environ`` when None.

    Raises:
        ConfigError: a file is missing or invalid, or a key or value is wrong.
    """
    environ = os.environ if environ is None else environ
    path = _config_path(config_path, environ)
    document = _read_toml(path) if path is not None else {}
    settings = _from_document(document, path)
    _check_schedule(settings.schedule, f"{path or 'settings'} [schedule]")

    url = database_url or environ.get(DATABASE_URL_ENV) or settings.database.url
    _check_url(url)
    return dataclasses.replace(settings, database=DatabaseSettings(url=url))


def _config_path(flag: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    chosen = flag or environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if path.is_dir():
            raise ConfigError(
                f"configuration file {path} is a folder; pass the path of a TOML file"
            )
        if not path.is_file():
            raise ConfigError(
                f"configuration file {path} not found; pass an existing file with "
                f"--config or {CONFIG_ENV}, or leave both unset for the defaults"
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _from_document(document: dict[str, Any], path: Path | None) -> Settings:
    where = str(path) if path is not None else "settings"
    sections: dict[str, Any] = {}
    for name, table in document.items():
        if name not in SECTIONS:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(f"{where}: unknown section [{name}]; known: {known}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {name} must be a table ([{name}])")
        sections[name] = _build_section(SECTIONS[name], table, f"{where} [{name}]")
    return Settings(**sections, source=path)


def _build_section(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r}; known keys: {', '.join(known)}"
            )
    values = {
        key: _check_value(key, value, known[key].type, where)
        for key, value in table.items()
    }
    return cls(**values)


def _check_value(key: str, value: Any, declared: Any, where: str) -> Any:
    kind = {"int": int, "float": float, "str": str, "bool": bool}[str(declared)]
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(
            f"{where} {key} = {value!r}: expected {_type_word(kind)}, "
            f"got {type(value).__name__}"
        )
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where} {key} = {value!r}: must be a finite number")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(
            f"{where} {key} = {value!r}: must be one of {', '.join(CHOICES[key])}"
        )
    if key in MINIMUMS:
        _check_minimum(key, value, where)
    if key in MAXIMUMS and value > MAXIMUMS[key]:
        raise ConfigError(f"{where} {key} = {value!r}: must be at most {MAXIMUMS[key]}")
    return value


def _check_minimum(key: str, value: float, where: str) -> None:
    bound, inclusive = MINIMUMS[key]
    if value < bound or (value == bound and not inclusive):
        relation = "at least" if inclusive else "greater than"
        raise ConfigError(f"{where} {key} = {value!r}: must be {relation} {bound}")


def _type_word(kind: type) -> str:
    words = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
    }
    return words[kind]


def _check_url(url: str) -> None:
    try:
        parse_url(url)
    except InvalidDatabaseURL as exc:
        raise ConfigError(f"invalid database URL {mask_url(url)!r}: {exc}") from exc


def _check_schedule(schedule: ScheduleSettings, where: str) -> None:
    try:
        zone = resolve_timezone(schedule.timezone)
    except InvalidSchedule as exc:
        raise ConfigError(f"{where} timezone = {schedule.timezone!r}: {exc}") from exc
    try:
        cron_trigger(schedule.cron, zone)
    except InvalidSchedule as exc:
        raise ConfigError(
            f"{where} cron = {schedule.cron!r}: invalid cron expression: {exc}"
        ) from exc


def settings_record(settings: Settings) -> dict[str, Any]:
    """Return the model and output settings as a JSON-ready dict for the run record."""
    return {
        "model": dataclasses.asdict(settings.model),
        "output": dataclasses.asdict(settings.output),
        "evaluation": dataclasses.asdict(settings.evaluation),
    }

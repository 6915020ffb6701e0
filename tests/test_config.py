"""Settings: precedence, validation errors that name the key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import load_settings
from jobs.errors import ConfigError


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database.url == "sqlite:///movie_recs.db"
    assert settings.model.min_rating == 3.0
    assert settings.model.favorite_weight == 5.0
    assert settings.output.n == 20
    assert settings.output.similar_n == 15
    assert settings.source is None


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[model]\nfactors = 32\nregularization = 5\n")
    settings = load_settings(path, environ={})
    assert settings.model.factors == 32
    assert settings.model.regularization == 5.0
    assert isinstance(settings.model.regularization, float)


def test_url_precedence_flag_env_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[database]\nurl = "sqlite:///file.db"\n')
    env = {"DATABASE_URL": "sqlite:///env.db"}
    assert load_settings(path, environ={}).database.url == "sqlite:///file.db"
    assert load_settings(path, environ=env).database.url == "sqlite:///env.db"
    flagged = load_settings(path, "sqlite:///flag.db", environ=env)
    assert flagged.database.url == "sqlite:///flag.db"


def test_config_env_names_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[output]\nn = 7\n")
    settings = load_settings(environ={"MOVIE_RECS_CONFIG": str(path)})
    assert settings.output.n == 7


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[modle]\nfactors = 3\n", "unknown section [modle]"),
        ("[model]\nfactrs = 3\n", "unknown key 'factrs'"),
        ("[model]\nfactors = 'many'\n", "factors = 'many': expected an integer"),
        ("[model]\nfactors = 2.5\n", "factors = 2.5: expected an integer"),
        ("[model]\nfactors = true\n", "factors = True: expected an integer"),
        ("[output]\nn = -1\n", "n = -1: must be at least 1"),
        ("[output]\nn = 0\n", "n = 0: must be at least 1"),
        ("[model]\nalpha = 0\n", "alpha = 0.0: must be greater than 0.0"),
        ("[model]\nregularization = -1\n", "regularization = -1.0: must be at least"),
        ("[database]\nurl = 5\n", "url = 5: expected a string"),
        ("[model]\nalpha = nan\n", "alpha = nan: must be a finite number"),
        ("[model]\nregularization = inf\n", "regularization = inf: must be a finite"),
        ("[model]\nfactors = 100000000\n", "factors = 100000000: must be at most"),
        ("[model]\nmin_rating = 7\n", "min_rating = 7.0: must be at most 5.0"),
        ("[output]\nn = 100000\n", "n = 100000: must be at most 1000"),
        ("model = 3\n", "model must be a table"),
        ("[model\n", "invalid TOML"),
        ('[database]\nurl = "mysql://x/y"\n', "names backend 'mysql'"),
        ('[database]\nurl = "not a url"\n', "cannot parse database URL"),
    ],
)
def test_invalid_config_rejected(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert expected in str(error.value)


def test_missing_config_file_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path / "nope.toml", environ={})
    assert "nope.toml not found" in str(error.value)


def test_password_masked_in_url_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"DATABASE_URL": "mysql://bob:hunter2@db/x"})
    assert "hunter2" not in str(error.value)
    assert "***" in str(error.value)

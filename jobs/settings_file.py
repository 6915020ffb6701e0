"""Edits of the settings file that keep its comments and never leave it half written."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from jobs.errors import ConfigError


def check_writable(path: Path) -> None:
    """Check that ``write_model_settings`` can replace or create ``path``.

    Raises:
        ConfigError: ``path`` is not a regular file or is read-only, or its
            folder is missing or not writable.
    """
    target = path.resolve()
    if target.exists() and not target.is_file():
        raise ConfigError(f"cannot write settings to {path}: it is not a file")
    # Replacing the file would succeed even when it is read-only, because
    # only the folder's permissions matter to a rename.
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(
            f"cannot write settings to {path}: the file is read-only; make it "
            "writable or pass --config with another file"
        )
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write settings to {path}: folder {folder} does not exist"
        )
    # The new text goes to a temporary file beside the target, which then
    # replaces it, so the folder must be writable, not only the file.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write settings to {path}: folder {folder} is not writable; "
            "pass --config with a file in a writable folder"
        )


def write_model_settings(path: Path, values: Mapping[str, Any]) -> None:
    """Set the keys ``values`` of ``[model]`` in the TOML file ``path``.

    Every other key, comment and blank line stays as it was; a missing file
    is created with only the ``[model]`` table. The new text replaces the old
    in one ``os.replace``, so an interrupted write leaves the old file whole.

    Raises:
        ConfigError: the file cannot be read, is invalid TOML, or cannot be
            written.
    """
    # Resolving first writes through a symbolic link instead of replacing it.
    target = path.resolve()
    document = _read_document(target, path)
    table = document.get("model")
    if table is None:
        new_table = tomlkit.table()
        new_table.update(values)
        document["model"] = new_table
    elif isinstance(table, MutableMapping):
        table.update(values)
    else:
        raise ConfigError(f"{path}: model must be a table ([model])")
    _replace_text(target, tomlkit.dumps(document), path)


def _read_document(target: Path, path: Path) -> tomlkit.TOMLDocument:
    if not target.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(target.read_text(encoding="utf-8"))
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _replace_text(target: Path, text: str, path: Path) -> None:
    mode = _file_mode(target)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        # Gone after a successful replace, left over after any failure.
        Path(temporary).unlink(missing_ok=True)


def _write_error(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write settings to {path}: {exc.strerror}; the file is unchanged"
    )


def _file_mode(target: Path) -> int:
    # mkstemp creates the file as 0600, so give it the mode of the file it
    # replaces, or what the umask makes of 0666 for a new file.
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask

"""The error family of movie-recs and the exit status of each member.

The command-line entry point turns every ``MovieRecsError`` into one line on
stderr and its ``exit_status``; anything else is a bug and exits with 1.
"""

from __future__ import annotations


class MovieRecsError(Exception):
    """Base of every error that the product reports to its users."""

    exit_status = 1


class ConfigError(MovieRecsError):
    """Invalid or missing setting in ``config.toml``, the environment or a flag."""

    exit_status = 2


class UsageError(MovieRecsError):
    """A command given arguments that cannot work together."""

    exit_status = 2


class DataError(MovieRecsError):
    """Input data that cannot be used: a malformed file, an unknown title."""

    exit_status = 3

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None
    ):
        if path is not None and line is not None:
            message = f"{path} line {line}: {message}"
        elif path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        self.path = path
        self.line = line


class NothingToDoError(MovieRecsError):
    """The database contains no interactions, so there is no model to train."""

    exit_status = 4


class LockedError(MovieRecsError):
    """Another run of the job holds the run lock."""

    exit_status = 5


class DatabaseError(MovieRecsError):
    """The database is unreachable, or its schema is not at the expected revision."""

    exit_status = 6


class ModelError(MovieRecsError):
    """Training produced unusable factors, for example NaN after divergence."""

    exit_status = 7

"""Start a throwaway PostgreSQL server for the test suite.

``start_postgres()`` runs initdb in a fresh temporary folder and starts a server
that listens on no TCP port, only on a Unix socket in that folder, with trust
authentication. Durability is off (fsync, synchronous_commit and
full_page_writes), so the data does not survive a crash of the machine, which
is acceptable only for tests.

PostgreSQL does not run as root. When the tests run as root, initdb and the
server run as the system user ``postgres``, and the folder belongs to that
user. Root's test process can still connect through the socket because root
bypasses the folder's permissions.

To test against an existing server instead, set ``MOVIE_RECS_TEST_POSTGRES_URL``
to the SQLAlchemy URL of a role that may create databases, for example
``postgresql+psycopg://recs:secret@localhost/postgres``. The suite's session
fixture then uses that server and starts none. This module does not read the
variable.

``PG_BIN`` overrides the search for the folder that contains initdb, pg_ctl
and postgres.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

PG_BIN_ENV = "PG_BIN"
INSTALL_HINT = (
    "Install the server with `apt-get install -y postgresql`, "
    f"or set {PG_BIN_ENV} to the folder that contains initdb."
)

# Superuser role that initdb creates, and the system user that runs the server
# when the tests run as root.
SERVER_USER = "postgres"
# The port only names the socket file (.s.PGSQL.5432). The socket folder is
# private to each server, so several servers can use the same number.
SERVER_PORT = 5432
MAINTENANCE_DATABASE = "postgres"

_REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_DEBIAN_INSTALL_ROOT = Path("/usr/lib/postgresql")
_LOG_FILE_NAME = "server.log"
_LOG_TAIL_LINES = 30
# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes), so the URL
# would name a database that does not exist.
_MAX_IDENTIFIER_BYTES = 63
_PG_CTL_WAIT_SECONDS = 60
_INITDB_TIMEOUT_SECONDS = 120

# Appended to postgresql.conf. The Unix socket settings are added per server.
_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresServerError(RuntimeError):
    """The throwaway server could not be found, initialized or started."""


class _Account(NamedTuple):
    """System user that runs initdb, pg_ctl and the server."""

    name: str
    uid: int
    gid: int
    groups: list[int]


@dataclass(eq=False)
class PostgresServer:
    """Running throwaway server that owns ``data_dir``.

    Attributes:
        url: SQLAlchemy URL of the maintenance database ``postgres``, of the
            form ``postgresql+psycopg://postgres@/postgres?host=SOCKETDIR&port=5432``.
        data_dir: Data directory, which also contains the Unix socket and
            ``server.log``. ``stop()`` deletes it.
        bin_dir: Folder with the pg_ctl that started the server.
    """

    url: str
    data_dir: Path
    bin_dir: Path
    _account: _Account | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Shut the server down in fast mode and delete ``data_dir``.

        Calls after the first do nothing. Failures are logged, not raised,
        because this also runs from ``atexit``.
        """
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)

        started = time.monotonic()
        _stop_server(self.bin_dir, self.data_dir, self._account)
        _remove_folder(self.data_dir)
        log.info(
            "Stopped PostgreSQL in %s after %.2f s",
            self.data_dir,
            time.monotonic() - started,
        )

    def pause(self) -> None:
        """Shut the server down in fast mode but keep ``data_dir``, for fault tests."""
        _stop_server(self.bin_dir, self.data_dir, self._account)

    def resume(self) -> None:
        """Start a paused server again on the same data and socket."""
        _start_server(self.bin_dir, self.data_dir, self._account)

    def create_database(self, name: str) -> str:
        """Create the database ``name`` and return its SQLAlchemy URL.

        Raises:
            ValueError: If ``name`` is empty, contains a NUL character or is
                longer than 63 bytes in UTF-8.
            PostgresServerError: If the server was stopped.
            sqlalchemy.exc.DBAPIError: If the server rejects the statement, for
                example because the database exists.
        """
        _validate_identifier(name)
        if self._stopped:
            raise PostgresServerError(
                f"cannot create database {name!r} because the server in "
                f"{self.data_dir} was stopped"
            )

        engine = create_engine(
            self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            # CREATE DATABASE cannot run inside a transaction block.
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            with engine.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {quoted}"))
        finally:
            engine.dispose()

        log.info("Created database %s in %s", name, self.data_dir)
        return _database_url(self.data_dir, name)


def find_postgres_bin() -> Path | None:
    """Return the folder with initdb, pg_ctl and postgres, or None if none is found.

    The search order is ``$PG_BIN``, the newest ``/usr/lib/postgresql/*/bin``
    (Debian and Ubuntu), ``pg_config --bindir`` and the folder of ``initdb``
    on ``PATH``.

    Raises:
        PostgresServerError: If ``PG_BIN`` is set but lacks one of the programs.
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        bin_dir = Path(override)
        if not _has_programs(bin_dir):
            raise PostgresServerError(
                f"{PG_BIN_ENV}={override} does not contain "
                f"{', '.join(_REQUIRED_PROGRAMS)}. Fix or unset {PG_BIN_ENV}."
            )
        return bin_dir

    for candidate in (
        _newest_debian_bin_dir(),
        _pg_config_bin_dir(),
        _initdb_on_path_bin_dir(),
    ):
        if candidate is not None and _has_programs(candidate):
            return candidate
    return None


def start_postgres(base_dir: Path | None = None) -> PostgresServer:
    """Initialize and start a server in a new folder under ``base_dir``.

    ``atexit`` stops the server when the interpreter exits, also after an
    uncaught exception, unless ``stop()`` ran first. A SIGKILL or
    ``os._exit()`` leaves the server running and its folder in place.

    Args:
        base_dir: Parent of the new data folder, or None for the system
            temporary folder. As root, the user ``postgres`` must be able to
            reach it. The socket path inside it must fit the Unix socket limit
            (107 bytes on Linux), or the server fails to start.

    Raises:
        PostgresServerError: If no server binaries are found, or initdb or
            the server start fails. The message contains the output of initdb
            or the tail of the server log.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresServerError(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found. {INSTALL_HINT}"
        )
    account = _server_account()

    started = time.monotonic()
    data_dir = _make_data_dir(base_dir, account)
    server = PostgresServer(
        url=_database_url(data_dir, MAINTENANCE_DATABASE),
        data_dir=data_dir,
        bin_dir=bin_dir,
        _account=account,
    )
    try:
        _init_cluster(bin_dir, data_dir, account)
        _write_settings(data_dir)
        _start_server(bin_dir, data_dir, account)
    except BaseException:
        server.stop()
        raise

    atexit.register(server.stop)
    log.info(
        "Started PostgreSQL from %s in %s after %.2f s",
        bin_dir,
        data_dir,
        time.monotonic() - started,
    )
    return server


def _has_programs(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED_PROGRAMS)


def _newest_debian_bin_dir() -> Path | None:
    """Return the bin folder of the highest version under /usr/lib/postgresql."""
    versions: list[tuple[tuple[int, ...], Path]] = []
    if not _DEBIAN_INSTALL_ROOT.is_dir():
        return None
    for version_dir in _DEBIAN_INSTALL_ROOT.iterdir():
        parts = version_dir.name.split(".")
        bin_dir = version_dir / "bin"
        if all(part.isdigit() for part in parts) and _has_programs(bin_dir):
            versions.append((tuple(int(part) for part in parts), bin_dir))
    if not versions:
        return None
    return max(versions)[1]


def _pg_config_bin_dir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        result = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("Ignoring %s because `--bindir` failed: %s", pg_config, exc)
        return None
    return Path(result.stdout.strip())


def _initdb_on_path_bin_dir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb is None:
        return None
    # Follow symlinks such as /usr/local/bin/initdb to the real install folder.
    return Path(initdb).resolve().parent


def _server_account() -> _Account | None:
    """Return the unprivileged account for the server, or None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresServerError(
            "PostgreSQL does not run as root, and the system user "
            f"{SERVER_USER!r} that would run it instead does not exist. Create it "
            f"(`useradd --system {SERVER_USER}`) or run the tests as a normal user."
        ) from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _run(
    args: Sequence[str | Path], account: _Account | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as ``account`` and capture its output.

    The working folder is ``/`` because the unprivileged user may not be able
    to enter the caller's working folder, which makes pg_ctl print warnings.
    """
    log.debug("Running %s", " ".join(str(arg) for arg in args))
    if account is None:
        return subprocess.run(
            args, cwd="/", capture_output=True, text=True, timeout=timeout
        )
    return subprocess.run(
        args,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        user=account.uid,
        group=account.gid,
        extra_groups=account.groups,
    )


def _make_data_dir(base_dir: Path | None, account: _Account | None) -> Path:
    """Create an empty folder for initdb, owned by ``account`` if given."""
    # libpq splits the host setting on commas, so a socket folder whose path
    # contains one cannot be named in the URL.
    if base_dir is not None and "," in str(base_dir):
        raise PostgresServerError(
            f"base_dir {base_dir} contains a comma, which libpq reads as a host "
            "separator. Choose a folder without commas."
        )

    data_dir = Path(tempfile.mkdtemp(prefix="movie-recs-pg-", dir=base_dir))
    if account is None:
        return data_dir

    os.chown(data_dir, account.uid, account.gid)
    result = _run(["test", "-w", data_dir, "-a", "-x", data_dir], account, 30)
    if result.returncode != 0:
        _remove_folder(data_dir)
        raise PostgresServerError(
            f"the system user {account.name!r} cannot write to {data_dir}, "
            "probably because a parent folder is private to root. Pass a "
            "base_dir that every user can traverse, such as /tmp."
        )
    return data_dir


def _init_cluster(bin_dir: Path, data_dir: Path, account: _Account | None) -> None:
    """Run initdb with trust authentication on the Unix socket only."""
    args: list[str | Path] = [
        bin_dir / "initdb",
        f"--pgdata={data_dir}",
        f"--username={SERVER_USER}",
        "--auth-local=trust",
        "--auth-host=reject",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]
    try:
        result = _run(args, account, _INITDB_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise PostgresServerError(
            f"initdb in {data_dir} timed out after {_INITDB_TIMEOUT_SECONDS} s"
        ) from exc

    if result.returncode != 0:
        output = _tail(result.stdout + result.stderr)
        raise PostgresServerError(
            f"initdb in {data_dir} failed with exit status "
            f"{result.returncode}:\n{output}"
        )
    log.debug("initdb output:\n%s", result.stdout)


def _write_settings(data_dir: Path) -> None:
    """Append the test settings to postgresql.conf, where later lines win."""
    settings = {
        **_SERVER_SETTINGS,
        "unix_socket_directories": str(data_dir),
        "port": str(SERVER_PORT),
    }
    lines = [f"{name} = {_quote_setting(value)}\n" for name, value in settings.items()]
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Added by tests/pg_server.py\n")
        conf.writelines(lines)


def _quote_setting(value: str) -> str:
    """Quote a value for postgresql.conf, which reads backslash escapes."""
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _start_server(bin_dir: Path, data_dir: Path, account: _Account | None) -> None:
    """Start the server with pg_ctl and wait until it accepts connections."""
    log_file = data_dir / _LOG_FILE_NAME
    args: list[str | Path] = [
        bin_dir / "pg_ctl",
        f"--pgdata={data_dir}",
        f"--log={log_file}",
        "--wait",
        f"--timeout={_PG_CTL_WAIT_SECONDS}",
        "start",
    ]
    try:
        # The extra 30 s lets pg_ctl report its own timeout first.
        result = _run(args, account, _PG_CTL_WAIT_SECONDS + 30)
    except subprocess.TimeoutExpired as exc:
        raise PostgresServerError(
            f"pg_ctl start in {data_dir} timed out. Server log:\n"
            f"{_read_log_tail(log_file)}"
        ) from exc

    if result.returncode != 0:
        raise PostgresServerError(
            f"pg_ctl start in {data_dir} failed with exit status "
            f"{result.returncode}: {result.stderr.strip()}\n"
            f"Server log:\n{_read_log_tail(log_file)}"
        )


def _stop_server(bin_dir: Path, data_dir: Path, account: _Account | None) -> None:
    """Stop the server in fast mode, logging instead of raising on failure."""
    # The postmaster deletes this file on shutdown, so without it no server runs.
    if not (data_dir / "postmaster.pid").exists():
        log.debug("No server runs in %s, so there is nothing to stop", data_dir)
        return

    args: list[str | Path] = [
        bin_dir / "pg_ctl",
        f"--pgdata={data_dir}",
        "--mode=fast",
        "--wait",
        f"--timeout={_PG_CTL_WAIT_SECONDS}",
        "stop",
    ]
    try:
        result = _run(args, account, _PG_CTL_WAIT_SECONDS + 30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("pg_ctl stop in %s failed: %s", data_dir, exc)
        return
    if result.returncode != 0:
        log.warning(
            "pg_ctl stop in %s failed with exit status %d: %s",
            data_dir,
            result.returncode,
            result.stderr.strip(),
        )


def _remove_folder(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("Could not delete %s: %s", folder, exc)


def _read_log_tail(log_file: Path) -> str:
    try:
        content = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {log_file}: {exc})"
    return _tail(content)


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-_LOG_TAIL_LINES:])


def _validate_identifier(name: str) -> None:
    if not name:
        raise ValueError("database name must not be empty")
    if "\0" in name:
        raise ValueError(f"database name {name!r} contains a NUL character")
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"database name {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes, "
            "so PostgreSQL would truncate it"
        )


def _database_url(socket_dir: Path, database: str) -> str:
    url = URL.create(
        "postgresql+psycopg",
        username=SERVER_USER,
        database=database,
        query={"host": str(socket_dir), "port": str(SERVER_PORT)},
    )
    return url.render_as_string(hide_password=False)

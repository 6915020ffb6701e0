"""Apply Alembic migrations and check that a database is at the latest revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

import migrations


class SchemaNotCurrent(RuntimeError):
    """The database's revision is not the head revision of this release."""

    def __init__(self, current: str | None, head: str):
        self.current = current
        self.head = head
        found = "no movie-recs tables" if current is None else f"revision {current}"
        super().__init__(
            f"the database schema is not up to date ({found}, expected {head}); "
            "run: python -m jobs db upgrade"
        )


class UnknownRevision(ValueError):
    """A revision name that the packaged migrations do not have."""


def alembic_config() -> Config:
    """Build the Alembic configuration that points at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str:
    """Return the newest revision that this release ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the database's revision, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table)."""
    _run(engine, "downgrade", revision)


def require_current(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the database is at the head revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaNotCurrent(current, head)


def _run(engine: Engine, direction: str, revision: str) -> None:
    config = alembic_config()
    _check_revision(config, revision)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def _check_revision(config: Config, revision: str) -> None:
    # Relative targets such as "-1" or "+1" are Alembic's own syntax.
    if revision in ("head", "base") or revision[:1] in "+-":
        return
    script = ScriptDirectory.from_config(config)
    try:
        script.get_revision(revision)
    except CommandError as exc:
        known = ", ".join(rev.revision for rev in script.walk_revisions())
        raise UnknownRevision(
            f"unknown revision {revision!r}; known revisions: {known}, or head or base"
        ) from exc

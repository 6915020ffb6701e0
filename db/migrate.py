"""Apply Alembic migrations and check that a database is at the latest revision.

Alembic is imported only by the commands that migrate: every other command
checks the revision with one query against ``HEAD_REVISION``, which spares
it about 0.2 s of imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

import migrations

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in migrations/versions; a test checks that Alembic agrees.
HEAD_REVISION = "0004"


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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str:
    """Return the newest revision that this release ships."""
    return HEAD_REVISION


def script_head_revision() -> str:
    """Return the newest revision as Alembic reads it from the migrations folder."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the database's revision, or None when it was never migrated."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        versions = connection.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalars()
        return next(iter(versions), None)


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
    from alembic import command

    config = alembic_config()
    _check_revision(config, revision)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def _check_revision(config: Config, revision: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

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

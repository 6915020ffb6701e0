"""The run lock: a second run does nothing; a dead holder never blocks."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from db.engine import make_engine
from helpers import seed_two_groups, small_settings
from jobs.cli import main
from jobs.errors import LockedError
from jobs.lock import run_lock
from jobs.run import run_once


def test_second_run_is_rejected(engine: Engine) -> None:
    seed_two_groups(engine)
    with run_lock(engine):
        with pytest.raises(LockedError) as error:
            run_once(engine, small_settings(str(engine.url)))
    assert "another run holds the run lock" in str(error.value)
    with engine.connect() as connection:
        runs = connection.execute(text("SELECT COUNT(*) FROM model_runs")).scalar_one()
    assert runs == 0


def test_locked_run_exits_5(engine: Engine, database_url: str) -> None:
    seed_two_groups(engine)
    with run_lock(engine):
        status = main(["--database-url", database_url, "-q", "run-once"])
    assert status == 5


def test_lock_released_after_run(engine: Engine) -> None:
    seed_two_groups(engine)
    settings = small_settings(str(engine.url))
    run_once(engine, settings)
    with run_lock(engine):
        pass
    assert run_once(engine, settings).run_id == 2


def test_killed_holder_does_not_block(engine: Engine, database_url: str) -> None:
    seed_two_groups(engine)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from db.engine import make_engine
                from jobs.lock import run_lock
                with run_lock(make_engine({database_url!r})):
                    print("locked", flush=True)
                    time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(LockedError):
        with run_lock(engine):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            summary = run_once(engine, small_settings(str(engine.url)))
            break
        except LockedError:
            # The server notices the closed connection within moments.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert summary.run_id == 1


def test_lock_shared_through_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.db"
    link = tmp_path / "link.db"
    target.touch()
    link.symlink_to(target)
    with run_lock(make_engine(f"sqlite:///{target}")):
        with pytest.raises(LockedError):
            with run_lock(make_engine(f"sqlite:///{link}")):
                pass

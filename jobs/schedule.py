"""``schedule``: the main job on a cron schedule, and refreshes in between.

The full run and the refresh share one worker thread, so inside this process
they never run at the same time. Both also take the run lock, which keeps
them apart from a ``run-once`` or ``refresh`` started elsewhere. When another
process holds the lock, the scheduled job is skipped with a warning.

SIGTERM or SIGINT stops the scheduler. A job in progress stops at its next
check (before each stage, after each ALS iteration, before a refresh
writes): it publishes nothing and a full run is recorded ``abandoned``. A
job already publishing finishes. The process then exits with status 0.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from db.engine import mask_url
from db.migrate import SchemaNotCurrent, require_current
from jobs.config import Settings
from jobs.control import RunControl, RunStopped
from jobs.cron import cron_trigger, resolve_timezone
from jobs.errors import LockedError, MovieRecsError, NothingToDoError
from jobs.logs import run_context
from jobs.refresh import RefreshSummary, refresh
from jobs.retry import call_with_retries, first_line, is_transient
from jobs.run import RunSummary, run_once

log = logging.getLogger(__name__)

FULL_RUN_JOB = "full-run"
REFRESH_JOB = "refresh"

# Seconds between checks of the stop request in the main thread.
STOP_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class JobOutcome:
    """The outcome of one scheduled job.

    ``status`` is ``succeeded``, ``failed``, ``abandoned`` (stopped, nothing
    published) or ``skipped`` (another process held the run lock, no run
    was published yet, or the scheduler was stopping).
    """

    status: str
    run_id: int | None
    seconds: float
    detail: str = ""


class Scheduler:
    """The full run on a cron trigger and the refresh on an interval, one at a time."""

    def __init__(
        self, engine: Engine, settings: Settings, control: RunControl | None = None
    ):
        self.engine = engine
        self.settings = settings
        self.control = control or RunControl()
        self.timezone = resolve_timezone(settings.schedule.timezone)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=self.timezone,
        )
        # True while refreshes wait for the first published run; logged once.
        self._refresh_waiting = False

    def start(self, run_now: bool = False) -> None:
        """Add both jobs and start the scheduler thread.

        Args:
            run_now: also start a full run at once, before the first cron time.
        """
        schedule = self.settings.schedule
        trigger = cron_trigger(schedule.cron, self.timezone)
        first: dict[str, Any] = {"next_run_time": self._now()} if run_now else {}
        self.scheduler.add_job(
            self.run_full,
            trigger,
            id=FULL_RUN_JOB,
            name="full run",
            misfire_grace_time=schedule.misfire_grace_seconds,
            **first,
        )
        refresh_seconds = schedule.refresh_minutes * 60
        self.scheduler.add_job(
            self.run_refresh,
            IntervalTrigger(seconds=refresh_seconds, timezone=self.timezone),
            id=REFRESH_JOB,
            name="refresh",
            misfire_grace_time=max(1, round(refresh_seconds)),
        )
        self.scheduler.add_listener(
            self._on_not_started, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        # Logged before start(), because with run_now the first job starts at once.
        log.info(
            "scheduler started on %s: full run on cron '%s' in %s, next at %s%s; "
            "refresh every %g min",
            mask_url(self.engine.url),
            schedule.cron,
            self.timezone,
            _format_time(trigger.get_next_fire_time(None, self._now())),
            " and one now (--run-now)" if run_now else "",
            schedule.refresh_minutes,
        )
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop the scheduler and wait for the job in progress to end."""
        self.scheduler.shutdown(wait=True)

    def run_full(self) -> JobOutcome:
        """Run the main job with retries, then log and return its outcome.

        An ``Exception`` from the run is logged and turned into a ``failed``
        outcome, so that the scheduler keeps going.
        """
        if self.control.stop_requested:
            return JobOutcome("skipped", None, 0.0, "the scheduler is stopping")
        log.info("full run starting")
        started = time.perf_counter()
        try:
            summary: RunSummary = self._with_retries("full run", self._full_attempt)
            outcome = JobOutcome("succeeded", summary.run_id, _since(started))
        except RunStopped as exc:
            outcome = JobOutcome(
                "abandoned", self.control.run_id, _since(started), str(exc)
            )
        except LockedError as exc:
            outcome = JobOutcome("skipped", None, _since(started), str(exc))
        except Exception as exc:  # a failed run must not stop the scheduler
            _log_unexpected("full run", exc)
            outcome = JobOutcome(
                "failed", self.control.run_id, _since(started), first_line(exc)
            )
        self._log_full(outcome)
        return outcome

    def run_refresh(self) -> JobOutcome:
        """Refresh changed users with retries, then log and return the outcome.

        As in ``run_full``, an ``Exception`` becomes a ``failed`` outcome.
        """
        if self.control.stop_requested:
            return JobOutcome("skipped", None, 0.0, "the scheduler is stopping")
        started = time.perf_counter()
        try:
            summary: RefreshSummary = self._with_retries(
                "refresh", lambda: refresh(self.engine, self.control)
            )
        except NothingToDoError as exc:
            if not self._refresh_waiting:
                log.info("refresh skipped until a run is published: %s", exc)
            self._refresh_waiting = True
            return JobOutcome("skipped", None, _since(started), str(exc))
        except RunStopped as exc:
            log.info("refresh stopped before writing: %s", exc)
            return JobOutcome("abandoned", None, _since(started), str(exc))
        except LockedError as exc:
            log.warning("refresh skipped: %s", exc)
            return JobOutcome("skipped", None, _since(started), str(exc))
        except Exception as exc:  # a failed refresh must not stop the scheduler
            _log_unexpected("refresh", exc)
            log.error(
                "refresh failed after %.1f s, the published lists are unchanged: %s",
                _since(started),
                first_line(exc),
            )
            return JobOutcome("failed", None, _since(started), first_line(exc))
        self._refresh_waiting = False
        return JobOutcome("succeeded", summary.run_id, _since(started))

    def _full_attempt(self) -> RunSummary:
        self.control.run_id = None
        return run_once(self.engine, self.settings, self.control)

    def _with_retries(self, name: str, job: Callable[[], Any]) -> Any:
        schedule = self.settings.schedule
        return call_with_retries(
            job,
            name=name,
            retries=schedule.retries,
            backoff_seconds=schedule.retry_backoff_seconds,
            stop_event=self.control.stop_event,
        )

    def _log_full(self, outcome: JobOutcome) -> None:
        run = "-" if outcome.run_id is None else str(outcome.run_id)
        context: AbstractContextManager[None] = nullcontext()
        if outcome.run_id is not None:
            context = run_context(outcome.run_id)
        with context:
            if outcome.status == "succeeded":
                log.info("full run %s succeeded in %.1f s", run, outcome.seconds)
            elif outcome.status == "failed":
                log.error(
                    "full run %s failed after %.1f s, the previous lists stay "
                    "published: %s",
                    run,
                    outcome.seconds,
                    outcome.detail,
                )
            else:
                log.warning(
                    "full run %s %s after %.1f s: %s",
                    run,
                    outcome.status,
                    outcome.seconds,
                    outcome.detail,
                )
        if not self.control.stop_requested:
            log.info("next full run at %s", self._next_full_run())

    def _on_not_started(self, event: JobEvent) -> None:
        name = "full run" if event.job_id == FULL_RUN_JOB else "refresh"
        level = logging.WARNING if event.job_id == FULL_RUN_JOB else logging.DEBUG
        # A missed run reports one time, a run skipped for max_instances several.
        if isinstance(event, JobExecutionEvent):
            times = [event.scheduled_run_time]
            reason = "it could not start within its misfire grace time"
        else:
            times = list(getattr(event, "scheduled_run_times", []))
            reason = "the previous one was still running or queued"
        due = ", ".join(_format_time(moment) for moment in times)
        log.log(level, "%s due at %s was skipped: %s", name, due, reason)

    def _next_full_run(self) -> str:
        job = self.scheduler.get_job(FULL_RUN_JOB)
        return _format_time(None if job is None else job.next_run_time)

    def _now(self) -> datetime:
        return datetime.now(self.timezone)


def serve(engine: Engine, settings: Settings, run_now: bool = False) -> None:
    """Run the scheduler until SIGTERM or SIGINT, then stop it cleanly.

    Must be called from the main thread, which receives the signals.

    Raises:
        SchemaNotCurrent: the database needs ``jobs db upgrade``.
    """
    control = RunControl()
    _check_database(engine)
    scheduler = Scheduler(engine, settings, control)
    with _stop_on_signals(control):
        scheduler.start(run_now)
        while not control.stop_event.wait(STOP_POLL_SECONDS):
            pass
        log.info(
            "%s: stopping; a job in progress stops at its next check and "
            "publishes nothing",
            control.reason,
        )
        scheduler.shutdown()
    log.info("scheduler stopped")


def _check_database(engine: Engine) -> None:
    try:
        require_current(engine)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning(
            "database %s is unreachable at start-up; each job retries: %s",
            mask_url(engine.url),
            first_line(exc),
        )


@contextmanager
def _stop_on_signals(control: RunControl) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a stop request while the block runs."""

    def request_stop(signum: int, _frame: object) -> None:
        # Only set the event here; the main thread logs once it wakes.
        control.request_stop(f"received {signal.Signals(signum).name}")

    previous = {
        number: signal.signal(number, request_stop)
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _log_unexpected(name: str, exc: Exception) -> None:
    # Errors of the product's family and database errors are reported by the
    # caller in one line; anything else is a bug, so keep its traceback.
    if isinstance(exc, MovieRecsError | SchemaNotCurrent) or is_transient(exc):
        return
    if type(exc).__module__.startswith("sqlalchemy"):
        return
    log.error("%s raised an unexpected error", name, exc_info=exc)


def _format_time(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def _since(started: float) -> float:
    return time.perf_counter() - started

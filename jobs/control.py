"""Stop requests from a supervising process, such as ``jobs schedule``, to a run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


class RunStopped(Exception):
    """A run or refresh ended early because its process was asked to stop."""


@dataclass
class RunControl:
    """A stop request shared between a supervisor and a running job.

    The job calls ``check`` between stages. ``run_once`` also stores the
    run_id of the run it started, so that the supervisor can log it.
    """

    stop_event: threading.Event = field(default_factory=threading.Event)
    reason: str = "a stop was requested"
    run_id: int | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the job to stop at its next check, giving ``reason`` for the record."""
        self.reason = reason
        self.stop_event.set()

    @property
    def stop_requested(self) -> bool:
        """Whether ``request_stop`` was called."""
        return self.stop_event.is_set()

    def check(self) -> None:
        """Raise RunStopped if a stop was requested."""
        if self.stop_event.is_set():
            raise RunStopped(self.reason)

"""``python -m jobs`` as a child process whose log lines a test reads as they come."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class JobsProcess:
    """A running ``python -m jobs ARGS``; stderr lines are collected by a thread."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None):
        full_env = dict(os.environ)
        full_env.pop("DATABASE_URL", None)
        full_env.pop("MOVIE_RECS_CONFIG", None)
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs", *args],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._pending.put(line)
        self._pending.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """Return the first new stderr line containing ``text``.

        Raises:
            AssertionError: the process ended or ``timeout`` seconds passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} in:\n{self.output}")
            try:
                line = self._pending.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before {text!r}:\n{self.output}")
            self.lines.append(line)
            if text in line:
                return line

    def send(self, number: signal.Signals) -> None:
        """Send signal ``number`` to the process."""
        self.process.send_signal(number)

    def wait(self, timeout: float = 120) -> int:
        """Wait for the process to end and its stderr to be read; return its status."""
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        while not self._pending.empty():
            line = self._pending.get_nowait()
            if line is not None:
                self.lines.append(line)
        return status

    @property
    def output(self) -> str:
        """Every stderr line read so far."""
        return "".join(self.lines)

    def kill(self) -> None:
        """End the process with SIGKILL if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

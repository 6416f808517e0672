"""Progress of the long stages (kernel builds, matrices), with an estimate of the end.

The library reports (`Tracker.advance`); whoever shows it installs a sink with `showing`:
the CLI draws a rich bar with an ETA on a terminal. Without a sink (CI, cron, a pipe,
the tests) progress goes to the log as one plain line at each tenth of the way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    task: str  # what is under way, e.g. "kernel build 6.1.192 i386"
    done: int
    total: int | None  # an estimate; None when there is none (a first build)
    unit: str  # "objects", "cells"
    elapsed: float  # seconds since the task started
    finished: bool = False
    expected_seconds: float | None = None  # the whole task's duration, as past runs took it

    @property
    def eta(self) -> float | None:
        """Seconds still to go: at the rate so far, else as past runs took; None without either."""
        if self.finished or self.total is None:
            return None
        if self.done > 0:
            return max(0.0, self.elapsed / self.done * (self.total - self.done))
        if self.expected_seconds is not None:
            return max(0.0, self.expected_seconds - self.elapsed)
        return None

    def line(self) -> str:
        """One plain line: "kernel build 6.1.192: 500/1834 objects (27 %), about 3m10s to go"."""
        if self.finished:
            return f"{self.task}: done, {self.done} {self.unit} in {duration(self.elapsed)}"
        if self.total is None:
            return f"{self.task}: {self.done} {self.unit} so far (no estimate of the end yet)"
        pct = 100 * min(self.done, self.total) // max(self.total, 1)
        eta = self.eta
        return (f"{self.task}: {self.done}/{self.total} {self.unit} ({pct} %)"
                + (f", about {duration(eta)} to go" if eta is not None else ""))


Sink = Callable[[Progress], None]
_sinks: list[Sink] = []
_lock = threading.Lock()


@contextlib.contextmanager
def showing(sink: Sink) -> Iterator[None]:
    """Send every progress report to `sink` (instead of the log) while inside."""
    with _lock:
        _sinks.append(sink)
    try:
        yield
    finally:
        with _lock:
            _sinks.remove(sink)


class Tracker:
    """One task's progress; `advance` reports it (to the sink, or to the log every tenth)."""

    def __init__(self, task: str, total: int | None, unit: str, expected_seconds: float | None = None) -> None:
        self.task, self.total, self.unit, self.expected_seconds = task, total, unit, expected_seconds
        self.done = 0
        self.started = time.monotonic()
        self._logged_tenth = 0
        self._logged_at = self.started

    def snapshot(self, finished: bool = False) -> Progress:
        return Progress(self.task, self.done, self.total, self.unit, time.monotonic() - self.started, finished,
                        self.expected_seconds)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._report(self.snapshot())

    def finish(self) -> None:
        self._report(self.snapshot(finished=True))

    def _report(self, p: Progress) -> None:
        with _lock:
            sink = _sinks[-1] if _sinks else None
        if sink is not None:
            sink(p)
            return
        if p.finished:
            log.info("%s", p.line())
            return
        if p.total:  # a line at each tenth of the estimate
            tenth = 10 * p.done // p.total
            if tenth > self._logged_tenth:
                self._logged_tenth = tenth
                log.info("%s", p.line())
        elif time.monotonic() - self._logged_at >= 60:  # no estimate: a line a minute
            self._logged_at = time.monotonic()
            log.info("%s", p.line())


def duration(seconds: float) -> str:
    """2m05s, 45s, 1h02m."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"

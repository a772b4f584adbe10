"""Waits that measure instead of guessing. `wait_until` polls a predicate (the store, the broker,
a log) up to a deadline and, when it runs out, fails with what the cluster knew. `Pace` holds how
long this machine takes right now, measured when a cluster fixture starts (worker start-up, a
warm-up run on each worker), and turns an amount of work into a deadline: a slow, busy machine
gets proportionally more time, a worker that stopped consuming still fails."""

from __future__ import annotations

import math
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

SLACK = 4.0
"""Deadlines are this many times the measured work: load can change after the measurement."""
FLOOR_SECONDS = 120.0
"""No deadline is shorter, however fast the measurement."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
    poll: float = 0.2,
) -> T:
    """The first truthy value of `predicate`, polled every `poll` s; on timeout an
    AssertionError naming `what`, followed by `diagnostics()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    report = diagnostics() if diagnostics is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{report}")


@dataclass
class Pace:
    """How long this machine takes, measured at a cluster fixture's set-up."""

    startup_seconds: float
    """A worker's start (spawn to Celery's "ready"), the slowest of the cluster's."""
    cold_run_seconds: float
    """A pool process's first run, from queued to succeeded (TensorFlow's import included)."""
    epoch_seconds: float
    """A steady epoch of the warm-up run (the tiny digits model)."""
    run_overhead_seconds: float
    """A run's time outside its steady epochs: tracing, evaluation, the model and S3 writes."""

    def run_seconds(self, epochs: int) -> float:
        return self.run_overhead_seconds + epochs * self.epoch_seconds

    def deadline(
        self,
        epochs: int = 0,
        runs: int = 1,
        workers: int = 2,
        cold: bool = False,
        extra: float = 0.0,
        floor: float = FLOOR_SECONDS,
    ) -> float:
        """Seconds to allow for `runs` runs of `epochs` epochs on `workers` workers, plus a
        worker start and a first run when `cold` (a replaced worker), plus `extra` fixed
        seconds (a visibility timeout, say), times SLACK, never under `floor`."""
        work = math.ceil(runs / max(1, workers)) * self.run_seconds(epochs) if runs else 0.0
        if cold:
            work += self.startup_seconds + self.cold_run_seconds
        return max(floor, SLACK * work + extra)

    @classmethod
    def measure(cls, startup_seconds: float, wall_seconds: float, metrics: list) -> Pace:
        """From a warm-up study's wall time and its runs' `RunMetrics` (two epochs or more)."""
        steady = [h.epoch_seconds for m in metrics for h in m.history[1:]]
        epoch = (
            statistics.median(steady)
            if steady
            else max(h.epoch_seconds for m in metrics for h in m.history)
        )
        overhead = max(m.timings["total_seconds"] - epoch * len(m.history) for m in metrics)
        return cls(startup_seconds, wall_seconds, epoch, max(0.5, overhead))

    def __str__(self) -> str:
        return (
            f"start-up {self.startup_seconds:.1f}s, cold run {self.cold_run_seconds:.1f}s, "
            f"epoch {self.epoch_seconds:.3f}s, run overhead {self.run_overhead_seconds:.2f}s"
        )


def run_process(
    command: list[str], timeout: float, what: str, **options
) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, **options)` bounded by
    `timeout`; when it runs out, the process is killed and an AssertionError names `what` with
    what it had printed by then."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
    except subprocess.TimeoutExpired as expired:
        output = "\n".join(_text(part) for part in (expired.stdout, expired.stderr) if part)
        message = f"timed out after {timeout:.0f}s waiting for {what}\n{output[-6000:]}"
        raise AssertionError(message) from None


def _text(part: bytes | str) -> str:
    return part.decode(errors="replace") if isinstance(part, bytes) else part

"""Whether any worker consumes a queue, asked with Celery's remote control while a study is
followed (`submit --wait`, `status --watch`): runs queued where no worker listens would wait
silently forever.

A worker answers `inspect().active_queues()` from its main process, busy training or not
(prefork: the pool processes train), so no answer within a second or two means no worker is
connected. The check runs at once and then every `interval` seconds while runs are unfinished;
each check that finds no consumer gives a warning, and a broker that cannot be asked gives one
and ends the checking (following the study needs only the store).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

INTERVAL_SECONDS = 30.0
REPLY_SECONDS = 1.5
"""How long workers have to answer: a connected worker answers in milliseconds."""


def queue_consumers(celery: Any, queue: str, timeout: float = REPLY_SECONDS) -> tuple[list[str], list[str]]:
    """(workers consuming `queue`, every worker that answered), by name."""
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    consuming = sorted(
        worker for worker, queues in replies.items() if any(q.get("name") == queue for q in queues or [])
    )
    return consuming, sorted(replies)


class QueueWatch:
    """Calls `warn` when no worker consumes `queue`: at the first `check`, then at most every
    `interval` seconds."""

    def __init__(
        self,
        celery: Any,
        queue: str,
        broker: str,
        warn: Callable[[str], None],
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.celery = celery
        self.queue = queue
        self.broker = broker
        self.warn = warn
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._stopped = False

    def check(self, unfinished: bool = True) -> None:
        if self._stopped or not unfinished or self.clock() < self._next:
            return
        self._next = self.clock() + self.interval
        try:
            consuming, answered = queue_consumers(self.celery, self.queue)
        except Exception as exc:  # the broker: its own errors, sockets, TLS; all say the same
            self._stopped = True
            self.warn(
                f"cannot ask the broker {self.broker} which workers consume queue {self.queue!r} "
                f"({type(exc).__name__}: {exc}); not checking again"
            )
            return
        if consuming:
            return
        others = f" ({len(answered)} workers answered, consuming other queues)" if answered else ""
        self.warn(
            f"no worker consumes queue {self.queue!r} on {self.broker}{others}: the runs wait "
            f"until one starts (ablate worker --queue {self.queue}); checking again in "
            f"{self.interval:.0f} s"
        )

"""`QueueWatch`: checks at once, then at most every interval while runs are unfinished; names a
queue nobody consumes, and stops after one warning when the broker cannot be asked. (The real
broker and workers: tests/integration/test_queue_watch.py.)"""

from __future__ import annotations

from service.queue_watch import QueueWatch


class Control:
    """Celery's `app.control` as far as the watch uses it: `inspect(timeout).active_queues()`."""

    def __init__(self, replies):
        self.replies = replies
        self.asked = 0

    def inspect(self, timeout):
        return self

    def active_queues(self):
        self.asked += 1
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies


class App:
    def __init__(self, replies):
        self.control = Control(replies)


def watch(replies, now):
    warnings: list[str] = []
    app = App(replies)
    return QueueWatch(app, "gpu", "redis://broker", warnings.append, interval=30, clock=lambda: now[0]), app, warnings


def test_warns_at_once_then_every_interval_only():
    now = [100.0]
    checker, app, warnings = watch({}, now)
    checker.check()
    assert len(warnings) == 1 and "no worker consumes queue 'gpu' on redis://broker" in warnings[0]
    now[0] += 29
    checker.check()
    assert len(warnings) == 1 and app.control.asked == 1
    now[0] += 2
    checker.check()
    assert len(warnings) == 2


def test_a_worker_on_the_queue_silences_it_and_others_are_named():
    now = [0.0]
    checker, _, warnings = watch({"w1@h": [{"name": "gpu"}], "w2@h": [{"name": "cpu"}]}, now)
    checker.check()
    assert warnings == []
    other, _, warned = watch({"w2@h": [{"name": "cpu"}]}, now)
    other.check()
    assert "1 workers answered, consuming other queues" in warned[0]


def test_finished_study_is_not_checked():
    checker, app, warnings = watch({}, [0.0])
    checker.check(unfinished=False)
    assert app.control.asked == 0 and warnings == []


def test_an_unreachable_broker_warns_once_and_stops_checking():
    now = [0.0]
    checker, app, warnings = watch(ConnectionRefusedError("refused"), now)
    checker.check()
    now[0] += 100
    checker.check()
    assert app.control.asked == 1 and len(warnings) == 1
    assert "cannot ask the broker redis://broker" in warnings[0] and "refused" in warnings[0]

"""Real `ablate worker` processes for integration tests: started with an environment, stopped
(or killed) by process group, their logs kept in files; how long they take to start, measured;
and, when a wait runs out, a dump of what the cluster knew (`Workers.diagnostics`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO
from tests.waits import Pace, wait_until

LOG_TAIL = 3000


class Workers:
    """Worker processes (two unless told) consuming one queue, logging to files."""

    def __init__(self, env: dict[str, str], logs: Path, count: int = 2) -> None:
        self.env = env
        self.logs_dir = logs
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.names: list[str] = []
        self.started_at: dict[int, float] = {}
        self.ready: set[int] = set()
        self.startup_seconds = 0.0
        """The slowest start-up (spawn to Celery's "ready") measured so far."""
        for _ in range(count):
            self.add()

    def command(self, name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            "--gpus",
            "none",
            "-c",
            "1",
            "-n",
            name,
        ]

    def add(self) -> subprocess.Popen:
        """Start one more worker (e.g. to replace a killed one)."""
        index = len(self.processes)
        log = self.logs_dir / f"worker{index}.log"
        name = f"w{index}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self.logs.append(log)
        self.names.append(name)
        process = subprocess.Popen(
            self.command(name),
            cwd=REPO,
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        self.started_at[process.pid] = time.monotonic()
        return process

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def owner_of(self, pid: int) -> subprocess.Popen | None:
        """The worker whose process group holds `pid` (a pool process or the parent)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((p for p in self.processes if p.pid == group), None)

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        os.killpg(process.pid, sig)

    def wait_ready(self, timeout: float = 300) -> None:
        """Until every live worker logged " ready."; a worker that exits fails at once. The
        timeout is a ceiling for a machine under heavy load (a start takes seconds when idle)."""

        def ready() -> bool:
            for process, log in zip(self.processes, self.logs, strict=True):
                if process.pid in self.ready:
                    continue
                assert process.poll() is None, f"worker exited:\n{log.read_text()[-LOG_TAIL:]}"
                if " ready." not in log.read_text():
                    return False
                self.ready.add(process.pid)
                took = time.monotonic() - self.started_at.get(process.pid, time.monotonic())
                self.startup_seconds = max(self.startup_seconds, took)
            return True

        wait_until(ready, timeout, "the workers to be ready", self.diagnostics, poll=0.1)

    def keep(self, count: int = 2) -> None:
        """Replace dead workers until `count` are alive and ready."""
        while len(self.alive()) < count:
            self.add()
        self.wait_ready()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def mark(self) -> list[int]:
        """Where each log ends now: `text(since=mark)` is what the workers logged after it."""
        return [log.stat().st_size if log.exists() else 0 for log in self.logs]

    def text(self, since: list[int] | None = None) -> str:
        parts = []
        for index, log in enumerate(self.logs):
            with log.open("rb") as f:
                f.seek(since[index] if since and index < len(since) else 0)
                parts.append(f.read().decode(errors="replace"))
        return "\n".join(parts)

    def name_of(self, process: subprocess.Popen) -> str:
        return self.names[self.processes.index(process)]

    def text_of(self, process: subprocess.Popen, since: list[int] | None = None) -> str:
        """What one worker logged (after `since`, a `mark()`)."""
        index = self.processes.index(process)
        with self.logs[index].open("rb") as f:
            f.seek(since[index] if since and index < len(since) else 0)
            return f.read().decode(errors="replace")

    def logged(self, text: str, since: list[int] | None = None) -> list[subprocess.Popen]:
        """The workers whose log holds `text` (after `since`)."""
        return [p for p in self.processes if text in self.text_of(p, since)]

    @contextlib.contextmanager
    def only(self, process: subprocess.Popen, queue: str):
        """Within the block, `process` is the only worker consuming `queue`: the other live
        workers' consumers are cancelled (Celery's remote control, each must answer) and added
        back on exit."""
        from service.queue import make_celery

        control = make_celery(self.settings()).control
        others = [self.name_of(p) for p in self.alive() if p is not process]
        if others:
            replies = control.cancel_consumer(queue, destination=others, reply=True, timeout=10)
            answered = {name for reply in replies or [] for name in reply}
            silent = sorted(set(others) - answered)
            assert not silent, (
                f"workers {silent} did not stop consuming {queue}\n{self.diagnostics()}"
            )
        try:
            yield
        finally:
            if others:
                control.add_consumer(queue, destination=others, reply=True, timeout=10)

    def busy(self) -> bool:
        """Whether any live worker reports a task running or reserved (`celery inspect`)."""
        from service.queue import make_celery

        destination = [
            n for n, p in zip(self.names, self.processes, strict=False) if p.poll() is None
        ]
        inspect = make_celery(self.settings()).control.inspect(destination=destination, timeout=2)
        replies = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
        return any(replies) or len(inspect.ping() or {}) < len(destination)

    # --- what the cluster knew, for a wait that ran out ---------------------------------------

    def diagnostics(self, store=None, run_ids: list[str] = ()) -> str:
        """Each worker's log tail and process state, `celery inspect active/reserved`, the
        queue's length and Redis's `unacked` hash, and the status.json of `run_ids`. Never
        raises: a part that cannot be read says why."""
        parts = []
        for process, log, name in zip(self.processes, self.logs, self.names, strict=False):
            state = "alive" if process.poll() is None else f"exited {process.returncode}"
            tail = log.read_text(errors="replace")[-LOG_TAIL:] if log.exists() else "(no log)"
            parts.append(f"--- worker {name} pid {process.pid} ({state}) log tail:\n{tail}")
        parts.append(_guarded("celery inspect", lambda: self._inspect()))
        parts.append(_guarded("broker", lambda: self._broker_state()))
        if store is not None:
            parts.append(_guarded("status.json", lambda: _statuses(store, run_ids)))
        return "\n".join(parts)

    def settings(self):
        """The settings the workers run with (their queue, their broker)."""
        from service.settings import Settings

        with _environ(self.env):  # the ABLATE_ variables the workers were started with
            return Settings()

    def _inspect(self) -> str:
        from service.queue import make_celery

        app = make_celery(self.settings())
        destination = [
            n for n, p in zip(self.names, self.processes, strict=False) if p.poll() is None
        ] or None
        inspect = app.control.inspect(destination=destination, timeout=3)
        lines = []
        for what in ("active", "reserved", "scheduled"):
            replies = getattr(inspect, what)() or {}
            lines.append(
                f"{what}: "
                + json.dumps(
                    {worker: [_task_line(t) for t in tasks] for worker, tasks in replies.items()},
                    default=str,
                )
            )
        answered = set((inspect.ping() or {}).keys())
        silent = sorted(set(destination or []) - answered)
        lines.append(f"answered ping: {sorted(answered)}; silent: {silent}")
        return "\n".join(lines)

    def _broker_state(self) -> str:
        from service.control import redis_client

        settings = self.settings()
        client = redis_client(settings)
        lines = [f"queue {settings.queue}: {client.llen(settings.queue)} messages"]
        unacked = client.hgetall("unacked")
        index = dict(client.zrange("unacked_index", 0, -1, withscores=True))
        lines.append(f"unacked: {len(unacked)} messages")
        now = time.time()
        for tag, raw in list(unacked.items())[:20]:
            with contextlib.suppress(Exception):
                message = json.loads(raw)[0]
                headers = message.get("headers", {})
                age = now - index.get(tag, now)
                lines.append(
                    f"  {tag.decode()}: task {headers.get('id')} retries {headers.get('retries')} "
                    f"eta {headers.get('eta')} unacked for {age:.0f}s"
                )
        return "\n".join(lines)


def _task_line(task: dict) -> str:
    return f"{task.get('id')} started {task.get('time_start')} pid {task.get('worker_pid')}"


def _statuses(store, run_ids) -> str:
    from service.lifecycle.storage import read_status

    lines = []
    for run_id in run_ids:
        status = read_status(store, run_id)
        metrics = store.exists(f"runs/{run_id}/metrics.json")
        lines.append(
            f"{run_id}: metrics.json {'present' if metrics else 'absent'}; status "
            + ("absent" if status is None else status.model_dump_json(exclude={"history"}))
        )
    return "\n".join(lines) or "(no runs)"


def _guarded(title: str, read: Callable[[], str]) -> str:
    try:
        return f"--- {title}:\n{read()}"
    except Exception as exc:  # a diagnostic must never hide the failure it explains
        return f"--- {title}: not read ({type(exc).__name__}: {exc})"


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def calibrate(workers: Workers, client, ceiling: float = 600) -> Pace:
    """Measure the cluster's pace with a warm-up study of one tiny run per worker (which also
    loads TensorFlow in each pool process before the tests time anything). `ceiling` bounds
    the measurement itself, on a machine whose speed is not known yet."""
    from service.lifecycle.documents import RunMetrics
    from tests.conftest import TINY

    count = len(workers.alive())
    spec = {
        **TINY,
        "name": "warm-up",
        "training": {"epochs": 2, "batch_size": 64},
        "ablation": {"seeds": [10_000 + i for i in range(count)]},
    }
    started = time.monotonic()
    study = client.submit(spec)
    wait_until(
        lambda: study.status().complete,
        ceiling,
        "the warm-up runs",
        lambda: workers.diagnostics(client.store, study.run_ids),
        poll=0.2,
    )
    wall = time.monotonic() - started
    metrics = [
        RunMetrics.model_validate(client.store.get_json(f"runs/{r}/metrics.json"))
        for r in study.run_ids
    ]
    return Pace.measure(workers.startup_seconds, wall, metrics)


def trained_by(workers: Workers, client, run_id: str) -> subprocess.Popen | None:
    """The worker whose pool process trained `run_id` (status.json's `host:pid`), while that
    pool process lives."""
    from service.lifecycle.storage import read_status

    status = read_status(client.store, run_id)
    worker = status.worker if status else None
    return workers.owner_of(int(worker.rsplit(":", 1)[1])) if worker else None


def takes_new_work(
    workers: Workers, client, process: subprocess.Popen, spec: dict, timeout: float, event: str
) -> None:
    """After `event`, `process` still consumes: with the other workers' consumers cancelled, a
    fresh run of `spec` (one run whose config no other test trains) is trained by it. A worker
    that stopped consuming fails here with the cluster's diagnostics, instead of passing
    because another worker took the run; one that exited fails at once."""
    assert process.poll() is None, f"the worker exited after {event}:\n{workers.diagnostics()}"
    with workers.only(process, workers.settings().queue):
        study = client.submit(spec)
        assert study.submit_report.queued == 1, (event, study.submit_report)
        (run_id,) = study.run_ids
        final = wait_study(workers, client, study, timeout)
        assert final.counts["succeeded"] == 1, (event, final)
        by = trained_by(workers, client, run_id)
        assert by is process, (
            f"after {event}, run {run_id} was trained by "
            f"{by and workers.name_of(by)}, not {workers.name_of(process)}"
        )


def wait_study(workers: Workers, client, study, timeout: float, poll: float = 0.5):
    """`study.wait`, with the cluster's diagnostics when `timeout` runs out: the final status."""

    def finished():
        status = study.status()
        return status if status.complete else None

    return wait_until(
        finished,
        timeout,
        f"study {study.study_id} to finish",
        lambda: workers.diagnostics(client.store, study.run_ids),
        poll,
    )

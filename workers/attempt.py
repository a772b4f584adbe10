"""One attempt at a run: the rules a worker applies between taking a run's message off the
queue and acknowledging it, as plain functions that need no Celery worker to test.

In order: a stale message is skipped (the run was submitted again since: a newer message owns
it); a cancelled run is marked so and not started; a worker that is shutting down hands the
message back before it starts; a run another attempt is training (its lease is held) is
deferred; a run whose every earlier attempt died mid-run fails once it reaches the attempt cap;
then the run trains under its lease, and the way it ends is mapped to an `Outcome`. A run that
outlived its time limit fails with the reason; the attempt that finishes a study's last run
writes its report.

The Celery task (workers/tasks.py) maps the `Outcome` to ack, reject (requeue) or retry. An
outcome is not a run state: the run's state is in its status.json (`service.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis
import structlog
from celery.exceptions import SoftTimeLimitExceeded

from service.control import RunControl, RunLease
from service.errors import AblateError, StoreUnavailable
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status, write_status
from service.store.base import Store
from workers.gpus import DeviceError
from workers.hooks import LeaseLost, RunHooks, RunResult, TimeLimitReached

log = structlog.get_logger(__name__)

Train = Callable[[RunSpec, RunHooks], RunResult]
"""Trains a run in this process (`workers.runner.run` bound to the store, in the task)."""


class Outcome(str, Enum):
    """How one attempt ended, and so what becomes of its message."""

    FINISHED = "finished"
    """The run is final after this attempt (`state` says how: trained to a result, diverged,
    failed, or cancelled before or while it trained), or it was already. Ack."""
    SKIPPED = "skipped"
    """A stale message: the run was submitted again since, and a newer message owns it. Ack."""
    SUPERSEDED = "superseded"
    """This attempt's lease was taken by a newer attempt: it wrote nothing more. Ack."""
    HANDED_BACK = "handed_back"
    """The worker is shutting down: the message goes back to the queue's head. Reject."""
    DEFERRED = "deferred"
    """Another attempt holds the run's lease: retry once that lease may be gone."""
    STORE_UNAVAILABLE = "store_unavailable"
    """The store could not be reached: retry later."""


@dataclass(frozen=True)
class AttemptResult:
    """An attempt's outcome, with what the task logs, returns or retries with."""

    outcome: Outcome
    run_id: str
    state: RunState | None = None
    reused: bool = False
    error: str | None = None
    reason: str | None = None
    """Why a message is handed back (the text of Celery's `Reject`)."""
    exc: Exception | None = None
    """The store's error, for the task to retry with."""

    def summary(self) -> dict[str, Any]:
        """The task's return value (JSON): the run, the outcome and the run's state."""
        summary: dict[str, Any] = {"run_id": self.run_id, "outcome": self.outcome.value}
        if self.state is not None:
            summary["state"] = self.state.value
            summary["reused"] = self.reused
        if self.error is not None:
            summary["error"] = self.error
        return summary


@dataclass(frozen=True)
class Limits:
    """The settings an attempt obeys (read once, where the worker starts)."""

    lease_seconds: float
    max_attempts: int
    run_time_limit: int


@dataclass(frozen=True)
class Message:
    """A validated run message: the run, its study and the queue message's id."""

    spec: RunSpec
    study_id: str
    task_id: str


Report = Callable[[Store, str], None]


def report_if_finished(store: Store, study_id: str) -> None:
    """The worker that finishes a study's last run writes its report (idempotent, so two
    workers finishing together write the same files)."""
    from service.report import study_finished, write_report

    try:
        if study_finished(store, study_id):
            log.info("study finished, report written", report=write_report(store, study_id))
    except Exception as exc:  # a report failure must not fail the run; `ablate report` retries
        log.error("report failed", error=f"{type(exc).__name__}: {exc}")


def is_stale(previous: RunStatus | None, task_id: str) -> bool:
    """Whether the run was submitted again after this message was sent (the newer message's
    id is in status.json)."""
    return previous is not None and previous.task_id not in (None, task_id)


def mark_cancelled(store: Store, run_id: str, previous: RunStatus | None) -> None:
    """Record a run cancelled before it started (its attempt count and epoch kept)."""
    status = previous or RunStatus(run_id=run_id, state=RunState.CANCELLED)
    write_status(store, status.model_copy(update={"state": RunState.CANCELLED}))


def gave_up(previous: RunStatus | None, max_attempts: int) -> str | None:
    """The error of a run whose every earlier attempt died mid-run (the worker was killed, or ran
    out of memory) once it reached the cap; None while it may try again. Only a run still
    `running` counts: a run handed back at shutdown is `queued`, its attempts not failures."""
    if previous is None or previous.state is not RunState.RUNNING:
        return None
    if previous.attempt < max_attempts:
        return None
    return (
        f"gave up after {previous.attempt} attempts: the worker died during each "
        f"(last at epoch {previous.epoch})"
    )


def over_time_limit(exc: BaseException | None) -> bool:
    """The run stopped at an epoch end past its time limit; or, before the run installed its
    handler, Celery's soft limit interrupted some call (a store wraps what it interrupts)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (SoftTimeLimitExceeded, TimeLimitReached)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def record_time_limit(
    store: Store, run_id: str, study_id: str, limit: int, report: Report, also_failed: bool = False
) -> None:
    """Mark a run that outlived its time limit as failed, saying so (it is not retried: it
    would again). A run already final is left be, except one the runner itself marked failed
    with whatever the limit interrupted (`also_failed`)."""
    try:
        status = read_status(store, run_id)
        if status is None:
            return
        if not (status.state.is_active or (also_failed and status.state is RunState.FAILED)):
            return
        error = (
            f"exceeded the run time limit of {limit}s at epoch {status.epoch} "
            "(raise ABLATE_RUN_TIME_LIMIT, and ABLATE_VISIBILITY_TIMEOUT above it)"
        )
        write_status(store, status.model_copy(update={"state": RunState.FAILED, "error": error}))
        log.error("run failed", run_id=run_id, study_id=study_id, error=error)
        report(store, study_id)
    except Exception as exc:  # recording must never take the worker down
        log.error("could not record the time limit", error=f"{type(exc).__name__}: {exc}")


def watch_cancellation(control: RunControl, run_id: str) -> Callable[[], bool]:
    """The runner's cancel hook. Redis briefly away (a restart) must not fail a training run:
    cancellation waits for it."""

    def cancelled() -> bool:
        try:
            return control.is_cancelled(run_id)
        except redis.RedisError:
            return False

    return cancelled


@dataclass(frozen=True)
class Worker:
    """The worker an attempt runs in: its name, the limits it obeys and what it can do."""

    hostname: str
    limits: Limits
    shutting_down: Callable[[], bool]
    time_up: Callable[[], bool]
    train: Train
    report: Report = report_if_finished


def run_attempt(
    message: Message, store: Store, control: RunControl, worker: Worker
) -> AttemptResult:
    """Apply the attempt's rules to `message` and train it when they allow. Raises
    `DeviceError` (the lease released first) when this process cannot train at all, and any
    error that is neither the run's nor the store's, after the report that marks the run."""
    run_id = message.spec.run_id
    previous = read_status(store, run_id)
    if is_stale(previous, message.task_id):
        log.info("stale message skipped", owner=previous.task_id, message=message.task_id)
        return AttemptResult(Outcome.SKIPPED, run_id)
    if control.is_cancelled(run_id):
        mark_cancelled(store, run_id, previous)
        log.info("run cancelled before it started")
        return AttemptResult(Outcome.FINISHED, run_id, RunState.CANCELLED)
    if worker.shutting_down():
        reason = "worker shutting down: run handed back before it started"
        return AttemptResult(Outcome.HANDED_BACK, run_id, reason=reason)

    owner = f"{worker.hostname}:{message.task_id}"
    lease = RunLease(control.client, run_id, owner, worker.limits.lease_seconds, control.namespace)
    if not lease.acquire():
        # Another attempt is training this run right now: come back when its lease may be gone.
        log.info("run is training elsewhere, deferred", holder=lease.holder())
        return AttemptResult(Outcome.DEFERRED, run_id)
    lease.start_heartbeat()
    try:
        return _train_leased(message, store, control, worker, lease)
    finally:
        lease.release()


def _train_leased(
    message: Message, store: Store, control: RunControl, worker: Worker, lease: RunLease
) -> AttemptResult:
    run_id, study_id = message.spec.run_id, message.study_id
    previous = read_status(store, run_id)  # again: the lease is ours now
    error = gave_up(previous, worker.limits.max_attempts)
    if error is not None:
        write_status(store, previous.model_copy(update={"state": RunState.FAILED, "error": error}))
        log.error("run failed", error=error)
        worker.report(store, study_id)
        return AttemptResult(Outcome.FINISHED, run_id, RunState.FAILED, error=error)

    hooks = RunHooks(
        cancelled=watch_cancellation(control, run_id),
        shutting_down=worker.shutting_down,
        time_up=worker.time_up,
        owns_run=lease.still_valid,
    )
    attempt = (previous.attempt if previous else 0) + 1
    log.info("run started", attempt=attempt, worker=worker.hostname)
    try:
        result = worker.train(message.spec, hooks)
    except LeaseLost:
        return AttemptResult(Outcome.SUPERSEDED, run_id)
    except DeviceError:
        raise  # not the run's failure: the worker stops (workers/tasks.py)
    except Exception as exc:
        return _failed(exc, message, store, worker)
    if result.handed_back:
        # Back on the queue (at its head), for another worker to resume from the checkpoint.
        reason = f"worker shutting down: run handed back at epoch {result.epochs_run}"
        return AttemptResult(Outcome.HANDED_BACK, run_id, result.state, reason=reason)
    log.info(
        "run finished",
        state=result.state.value,
        reused=result.reused,
        test_accuracy=result.test_accuracy,
    )
    worker.report(store, study_id)
    return AttemptResult(Outcome.FINISHED, run_id, result.state, result.reused, result.error)


def _failed(exc: Exception, message: Message, store: Store, worker: Worker) -> AttemptResult:
    """Map a training error: past the time limit, the run fails saying so; a store outage is
    retried; a known error fails the run; anything else is raised, failing the task too (after
    the report, which marks the run)."""
    run_id, study_id = message.spec.run_id, message.study_id
    if over_time_limit(exc):
        # (The runner marked it failed with whatever the limit interrupted: say what happened.)
        limit = worker.limits.run_time_limit
        record_time_limit(store, run_id, study_id, limit, worker.report, also_failed=True)
        return AttemptResult(Outcome.FINISHED, run_id, RunState.FAILED, error="time limit")
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable, retrying", error=str(exc))
        return AttemptResult(Outcome.STORE_UNAVAILABLE, run_id, error=str(exc), exc=exc)
    worker.report(store, study_id)
    if not isinstance(exc, AblateError):
        raise exc
    log.error("run failed", error=str(exc))
    return AttemptResult(Outcome.FINISHED, run_id, RunState.FAILED, error=str(exc))

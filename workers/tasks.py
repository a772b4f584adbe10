"""The Celery task: validate the message, call the runner, map errors to retry or failure.

The store is the source of truth for a run's status and result; the task returns only a small
JSON summary and no result backend is needed.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import NoReturn

import redis
import structlog
from billiard.exceptions import TimeLimitExceeded
from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_ready

from service.control import RunControl, RunLease, redis_client
from service.errors import AblateError, StoreError
from service.identity import RunSpec
from service.queue import TRAIN_TASK
from service.lifecycle import RunStatus, read_status, write_status
from service.store import open_store
from workers.app import app, draining, settings, time_up, watch_soft_time_limit
from workers.gpus import DeviceError
from workers.message import InvalidMessage, validate_message
from workers.transport import REJECTED_COUNTER

log = structlog.get_logger(__name__)
RETRY_SECONDS = 30


class TrainTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Called in the worker's parent process when the hard time limit killed the pool
        # process: nothing else would record the run, left `running` with its message acked.
        if isinstance(exc, TimeLimitExceeded):
            _record_time_limit(kwargs.get("run"), kwargs.get("study_id"))


@app.task(name=TRAIN_TASK, bind=True, max_retries=5, base=TrainTask)
def train_run(self, run: dict, study_id: str, store: str) -> dict:
    structlog.contextvars.clear_contextvars()
    own = _store(settings.store)
    try:
        # Every field, before any is logged or used: anyone who reaches the broker can send one.
        spec = validate_message(run, study_id, store, self.request.id, own.url)
    except InvalidMessage as exc:
        log.error("invalid run message, dropped", reason=str(exc))
        _count_rejected()
        raise Reject(f"invalid run message: {exc}", requeue=False) from None
    structlog.contextvars.bind_contextvars(study_id=study_id, run_id=spec.run_id)

    previous = read_status(own, spec.run_id)
    if previous is not None and previous.task_id not in (None, self.request.id):
        # The run was submitted again after this message was sent: the newer message owns it.
        log.info("stale message skipped", owner=previous.task_id, message=self.request.id)
        return {"run_id": spec.run_id, "state": "skipped"}
    control = _control()
    if control.is_cancelled(spec.run_id):
        status = previous or RunStatus(run_id=spec.run_id, state="cancelled")
        write_status(own, status.model_copy(update={"state": "cancelled"}))
        log.info("run cancelled before it started")
        return {"run_id": spec.run_id, "state": "cancelled"}

    if draining():
        raise Reject("worker shutting down: run handed back before it started", requeue=True)
    lease = RunLease(control.client, spec.run_id, f"{self.request.hostname}:{self.request.id}", settings.lease_seconds)
    if not lease.acquire():
        # Another attempt is training this run right now: come back when its lease may be gone.
        log.info("run is training elsewhere, deferred", holder=lease.holder())
        raise self.retry(countdown=settings.lease_seconds, max_retries=None)
    lease.start_heartbeat()
    try:
        return _train_leased(self, spec, own, study_id, control, lease)
    except DeviceError as exc:
        unable = exc
    finally:
        lease.release()
    _stop_worker(unable)


def _stop_worker(exc: DeviceError) -> NoReturn:
    """This process cannot train as configured (pinned to a GPU TensorFlow does not list, a
    memory cap it refused), and no other process of this worker can either: stop the whole
    worker non-zero, so that its supervisor and orchestrator see it, instead of taking run after
    run. The runner wrote nothing; the unacknowledged message goes back to the queue."""
    log.critical("this worker cannot train: stopping it", error=str(exc))
    os.kill(os.getppid(), STOP_SIGNAL)
    os._exit(exc.exit_code)  # the parent requeues the run of a lost pool process


STOP_SIGNAL = signal.SIGUSR2
"""Sent by a pool process to the worker's parent: stop, exiting with DeviceError.exit_code.
(Celery's own shutdowns exit 0, its cold shutdown too.)"""


@worker_ready.connect
def _accept_stop_requests(**_: object) -> None:
    # In the worker's parent process, once it runs.
    signal.signal(STOP_SIGNAL, _stop_requested)


def _stop_requested(signum: int, frame: object) -> None:
    from celery.worker import state

    # Raised as WorkerShutdown(code) at the parent's next check: a warm stop with that exit code.
    state.should_stop = DeviceError.exit_code


def _train_leased(task, spec: RunSpec, own, study_id: str, control: RunControl, lease: RunLease) -> dict:
    previous = read_status(own, spec.run_id)
    if previous is not None and previous.state == "running" and previous.attempt >= settings.max_attempts:
        # Every earlier attempt died mid-run (the worker was killed, or ran out of memory).
        error = f"gave up after {previous.attempt} attempts: the worker died during each (last at epoch {previous.epoch})"
        write_status(own, previous.model_copy(update={"state": "failed", "error": error}))
        log.error("run failed", error=error)
        _report_if_finished(own, study_id)
        return {"run_id": spec.run_id, "state": "failed", "error": error}

    from workers.runner import LeaseLost
    from workers.runner import run as train  # TensorFlow loads here, in the pool process only

    watch_soft_time_limit()

    log.info("run started", attempt=(previous.attempt if previous else 0) + 1, worker=task.request.hostname)
    try:
        result = train(
            spec,
            own,
            should_stop=lambda: _cancelled(control, spec.run_id),
            still_owner=lease.still_valid,
            should_pause=draining,
            time_up=time_up,
        )
    except LeaseLost:
        return {"run_id": spec.run_id, "state": "superseded"}
    except DeviceError:
        raise  # not the run's failure: the worker stops (train_run)
    except Exception as exc:
        if not _over_time_limit(exc):
            return _train_failed(task, exc, spec.run_id, own, study_id)
        # (The runner marked it failed with whatever the limit interrupted: say what happened.)
        _record_time_limit(spec.model_dump(mode="json"), study_id, also_failed=True)
        return {"run_id": spec.run_id, "state": "failed", "error": "time limit"}
    if result.state == "requeued":
        # Back on the queue (at its head), for another worker to resume from the checkpoint.
        raise Reject(f"worker shutting down: run handed back at epoch {result.epochs_run}", requeue=True)
    log.info("run finished", state=result.state, reused=result.reused, test_accuracy=result.test_accuracy)
    _report_if_finished(own, study_id)
    return {"run_id": spec.run_id, "state": result.state, "reused": result.reused}


def _over_time_limit(exc: BaseException | None) -> bool:
    """The run stopped at an epoch end past its time limit; or, before the run installed its
    handler, Celery's soft limit interrupted some call (a store wraps what it interrupts)."""
    from workers.runner import TimeLimitReached

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (SoftTimeLimitExceeded, TimeLimitReached)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _train_failed(task, exc: Exception, run_id: str, own, study_id: str) -> dict:
    """Map a training error: a store outage is retried, a known error fails the run, anything
    else fails the task too (after the report, which marks the run)."""
    if isinstance(exc, StoreError) and getattr(exc, "transient", False):
        log.warning("store unavailable, retrying", error=str(exc))
        raise task.retry(exc=exc, countdown=RETRY_SECONDS) from None
    _report_if_finished(own, study_id)
    if not isinstance(exc, AblateError):
        raise exc
    log.error("run failed", error=str(exc))
    return {"run_id": run_id, "state": "failed", "error": str(exc)}


def _record_time_limit(run: object, study_id: object, also_failed: bool = False) -> None:
    """Mark a run that outlived ABLATE_RUN_TIME_LIMIT as failed (not retried: it would again)."""
    if not isinstance(run, dict) or not isinstance(study_id, str):
        return
    try:
        spec = RunSpec.model_validate(run)
        store = _store(settings.store)
        status = read_status(store, spec.run_id)
        if status is None or status.state not in ("queued", "running", *(["failed"] if also_failed else [])):
            return
        error = (
            f"exceeded the run time limit of {settings.run_time_limit}s at epoch {status.epoch} "
            "(raise ABLATE_RUN_TIME_LIMIT, and ABLATE_VISIBILITY_TIMEOUT above it)"
        )
        write_status(store, status.model_copy(update={"state": "failed", "error": error}))
        log.error("run failed", run_id=spec.run_id, study_id=study_id, error=error)
        _report_if_finished(store, study_id)
    except Exception as exc:  # recording must never take the worker down
        log.error("could not record the time limit", error=f"{type(exc).__name__}: {exc}")


def _count_rejected() -> None:
    try:  # counting must never fail the message's rejection
        _control().client.incr(REJECTED_COUNTER)
    except Exception as exc:
        log.warning("could not count a rejected message", error=f"{type(exc).__name__}: {exc}")


@functools.lru_cache(maxsize=8)
def _store(url: str):
    # One store (and boto3 client, whose creation costs a third of a second) per pool process.
    return open_store(url)


@functools.lru_cache(maxsize=1)
def _control() -> RunControl:
    return RunControl(redis_client(settings))


def _cancelled(control: RunControl, run_id: str) -> bool:
    # Redis briefly away (a restart) must not fail a training run: cancellation waits for it.
    try:
        return control.is_cancelled(run_id)
    except redis.RedisError:
        return False


def _report_if_finished(store, study_id: str) -> None:
    """The worker that finishes a study's last run writes its report (idempotent, so two
    workers finishing together write the same files)."""
    from service.report import study_finished, write_report

    try:
        if study_finished(store, study_id):
            log.info("study finished, report written", report=write_report(store, study_id))
    except Exception as exc:  # a report failure must not fail the run; `ablate report` retries
        log.error("report failed", error=f"{type(exc).__name__}: {exc}")

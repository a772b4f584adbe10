"""The Celery task: validate the message, run one attempt, map its outcome to ack, reject or
retry. The attempt's rules are plain functions in workers/attempt.py.

The store is the source of truth for a run's status and result; the task returns only a small
JSON summary and no result backend is needed. Settings are read here, once, and handed down.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import NoReturn

import structlog
from billiard.exceptions import TimeLimitExceeded
from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_ready

from service.control import RunControl, redis_client
from service.identity import RunSpec
from service.queue import TRAIN_TASK
from service.store import open_store
from service.store.base import Store
from workers.app import app, draining, settings, time_up, watch_soft_time_limit
from workers.attempt import (
    Limits,
    Message,
    Outcome,
    Worker,
    record_time_limit,
    report_if_finished,
    run_attempt,
)
from workers.gpus import DeviceError
from workers.hooks import RunHooks, RunResult
from workers.message import InvalidMessage, validate_message
from workers.run_options import RunOptions
from workers.transport import REJECTED_COUNTER

log = structlog.get_logger(__name__)
RETRY_SECONDS = 30
LIMITS = Limits(settings.lease_seconds, settings.max_attempts, settings.run_time_limit)
RUN_OPTIONS = RunOptions.from_settings(settings, worker=True)  # no model factory unless allowed


class TrainTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # Called in the worker's parent process when the hard time limit killed the pool
        # process: nothing else would record the run, left `running` with its message acked.
        if isinstance(exc, TimeLimitExceeded):
            _record_hard_time_limit(kwargs.get("run"), kwargs.get("study_id"))


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

    worker = Worker(
        self.request.hostname, LIMITS, draining, time_up, functools.partial(_train, own)
    )
    try:
        attempt = run_attempt(Message(spec, study_id, self.request.id), own, _control(), worker)
    except DeviceError as exc:
        _stop_worker(exc)
    # Every other outcome acknowledges the message (its summary is logged; no result backend).
    if attempt.outcome is Outcome.HANDED_BACK:
        raise Reject(attempt.reason, requeue=True)
    if attempt.outcome is Outcome.DEFERRED:
        raise self.retry(countdown=LIMITS.lease_seconds, max_retries=None)
    if attempt.outcome is Outcome.STORE_UNAVAILABLE:
        raise self.retry(exc=attempt.exc, countdown=RETRY_SECONDS)
    return attempt.summary()


def _train(store: Store, spec: RunSpec, hooks: RunHooks) -> RunResult:
    from workers.quiet_start import load_tensorflow

    load_tensorflow()  # its C++ start-up lines become one debug event: the log stays JSON
    from workers.runner import run  # TensorFlow loads here, in the pool process only

    watch_soft_time_limit()
    return run(spec, store, hooks, RUN_OPTIONS)


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


def _record_hard_time_limit(run: object, study_id: object) -> None:
    """Mark a run the hard time limit killed as failed. Its message's fields were validated in
    the pool process, not here: anything unreadable is left alone."""
    if not isinstance(run, dict) or not isinstance(study_id, str):
        return
    try:
        run_id = RunSpec.model_validate(run).run_id
        store = _store(settings.store)
    except Exception as exc:  # recording must never take the worker down
        log.error("could not record the time limit", error=f"{type(exc).__name__}: {exc}")
        return
    record_time_limit(store, run_id, study_id, LIMITS.run_time_limit, report_if_finished)


def _count_rejected() -> None:
    try:  # counting must never fail the message's rejection
        _control().client.incr(REJECTED_COUNTER)
    except Exception as exc:
        log.warning("could not count a rejected message", error=f"{type(exc).__name__}: {exc}")


@functools.lru_cache(maxsize=8)
def _store(url: str):
    # One store (and boto3 client, whose creation costs a third of a second) per pool process.
    return open_store(url, settings.store_outage_seconds)


@functools.lru_cache(maxsize=1)
def _control() -> RunControl:
    return RunControl(redis_client(settings))

"""The attempt policy of workers/attempt.py against Redis, each rule both ways, without a Celery
worker: a real LocalStore in a tmp dir, a redis-server of the module's own (tests/redis_server.py),
and a stand-in for the runner (training a real model is the runner's tests' business). The rules
that need no Redis are tests/unit/test_attempt.py's."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from service.control import RunControl, RunLease
from service.errors import DatasetError, StoreUnavailable
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status, write_status
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from tests.conftest import TINY
from tests.redis_server import RedisServer
from workers.attempt import (
    AttemptResult,
    Limits,
    Message,
    Outcome,
    Worker,
    run_attempt,
)
from workers.gpus import DeviceError
from workers.hooks import LeaseLost, RunHooks, RunResult, StopReason, TimeLimitReached

STUDY_ID = "tiny-0123456789abcdef"
TASK_ID_SUFFIX = "-0123456789ab"
LIMITS = Limits(lease_seconds=5, max_attempts=3, run_time_limit=20)


@pytest.fixture(scope="module")
def spec() -> RunSpec:
    (run,) = build_plan(spec_from_data(TINY)).runs.values()
    return run


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def control(redis_server):
    client = redis_server.client()
    namespace = f"test-attempt-{uuid.uuid4().hex[:12]}"
    yield RunControl(client, namespace)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


class Trainer:
    """Stands in for `workers.runner.run`: records the hooks it was given, then does `action`
    (returns its RunResult or raises its exception)."""

    def __init__(
        self, action: Callable[[RunSpec, RunHooks], RunResult] | BaseException | None = None
    ):
        self.action = action
        self.calls: list[RunHooks] = []

    def __call__(self, spec: RunSpec, hooks: RunHooks) -> RunResult:
        self.calls.append(hooks)
        if isinstance(self.action, BaseException):
            raise self.action
        if self.action is not None:
            return self.action(spec, hooks)
        return RunResult(spec.run_id, RunState.SUCCEEDED, False, 0.9, 3)


class Reports:
    def __init__(self) -> None:
        self.studies: list[str] = []

    def __call__(self, store, study_id: str) -> None:
        self.studies.append(study_id)


def attempt(
    spec: RunSpec,
    store,
    control: RunControl,
    trainer: Trainer,
    reports: Reports | None = None,
    shutting_down: bool = False,
    task_id: str | None = None,
) -> AttemptResult:
    worker = Worker(
        hostname="celery@test",
        limits=LIMITS,
        shutting_down=lambda: shutting_down,
        time_up=lambda: False,
        train=trainer,
        report=reports if reports is not None else Reports(),
    )
    message = Message(spec, STUDY_ID, task_id or spec.run_id + TASK_ID_SUFFIX)
    return run_attempt(message, store, control, worker)


def lease_of(control: RunControl, run_id: str) -> RunLease:
    return RunLease(control.client, run_id, "someone-else", LIMITS.lease_seconds, control.namespace)


# --- stale messages ------------------------------------------------------------------------


def test_a_message_older_than_the_runs_newest_is_skipped_untouched(spec, store, control):
    newer = spec.run_id + "-ffffffffffff"
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED, task_id=newer))
    trainer = Trainer()
    result = attempt(spec, store, control, trainer)
    assert result.outcome is Outcome.SKIPPED and result.summary() == {
        "run_id": spec.run_id,
        "outcome": "skipped",
    }
    assert trainer.calls == []
    assert read_status(store, spec.run_id).task_id == newer


def test_the_message_that_owns_the_run_or_a_run_without_status_trains(spec, store, control):
    own = spec.run_id + TASK_ID_SUFFIX
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED, task_id=own))
    trainer = Trainer()
    result = attempt(spec, store, control, trainer)
    assert result.outcome is Outcome.FINISHED and result.state is RunState.SUCCEEDED
    assert len(trainer.calls) == 1


# --- cancelled before it starts ------------------------------------------------------------


def test_a_run_cancelled_before_it_starts_is_marked_cancelled_and_not_trained(spec, store, control):
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED, attempt=2, epoch=4))
    control.cancel([spec.run_id])
    trainer = Trainer()
    result = attempt(spec, store, control, trainer)
    assert result.outcome is Outcome.FINISHED and result.state is RunState.CANCELLED
    assert trainer.calls == []
    status = read_status(store, spec.run_id)
    assert status.state is RunState.CANCELLED and (status.attempt, status.epoch) == (2, 4)


def test_a_cancelled_run_without_status_gets_one(spec, store, control):
    control.cancel([spec.run_id])
    attempt(spec, store, control, Trainer())
    assert read_status(store, spec.run_id).state is RunState.CANCELLED


def test_the_runners_cancel_hook_follows_the_flag_and_survives_redis_errors(spec, store, control):
    seen: list[bool] = []

    def train(spec: RunSpec, hooks: RunHooks) -> RunResult:
        seen.append(hooks.cancelled())
        control.cancel([spec.run_id])
        seen.append(hooks.cancelled())
        return RunResult(spec.run_id, RunState.CANCELLED, False, None, 2, stop=StopReason.CANCELLED)

    result = attempt(spec, store, control, Trainer(train))
    assert seen == [False, True]
    assert result.outcome is Outcome.FINISHED and result.state is RunState.CANCELLED

    unreachable = RunControl(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    from workers.attempt import watch_cancellation

    assert watch_cancellation(unreachable, spec.run_id)() is False  # waits for Redis to return


# --- shutting down -------------------------------------------------------------------------


def test_a_worker_shutting_down_hands_the_message_back_before_it_starts(spec, store, control):
    trainer = Trainer()
    result = attempt(spec, store, control, trainer, shutting_down=True)
    assert result.outcome is Outcome.HANDED_BACK
    assert result.reason == "worker shutting down: run handed back before it started"
    assert trainer.calls == [] and read_status(store, spec.run_id) is None
    assert lease_of(control, spec.run_id).holder() is None  # no lease was taken


def test_a_run_handed_back_mid_run_is_handed_back_without_a_report(spec, store, control):
    def train(spec: RunSpec, hooks: RunHooks) -> RunResult:
        assert hooks.shutting_down() is False  # the worker's flag, as the runner asks it
        return RunResult(spec.run_id, RunState.QUEUED, False, None, 4, stop=StopReason.HANDED_BACK)

    reports = Reports()
    result = attempt(spec, store, control, Trainer(train), reports)
    assert result.outcome is Outcome.HANDED_BACK
    assert result.reason == "worker shutting down: run handed back at epoch 4"
    assert reports.studies == []


# --- the lease -----------------------------------------------------------------------------


def test_a_run_whose_lease_is_held_elsewhere_is_deferred_untrained(spec, store, control):
    other = lease_of(control, spec.run_id)
    assert other.acquire()
    trainer, reports = Trainer(), Reports()
    result = attempt(spec, store, control, trainer, reports)
    assert result.outcome is Outcome.DEFERRED
    assert trainer.calls == [] and reports.studies == []
    assert other.holder() == other.value  # the holder's lease is untouched


def test_the_lease_is_held_while_training_and_released_after(spec, store, control):
    holders: list[str | None] = []

    def train(spec: RunSpec, hooks: RunHooks) -> RunResult:
        holders.append(lease_of(control, spec.run_id).holder())
        assert hooks.owns_run()
        return RunResult(spec.run_id, RunState.SUCCEEDED, False, 0.9, 3)

    attempt(spec, store, control, Trainer(train))
    assert holders[0] is not None and holders[0].startswith(f"celery@test:{spec.run_id}")
    assert lease_of(control, spec.run_id).holder() is None


def test_a_newer_attempts_token_fences_this_one_and_supersedes_it(spec, store, control):
    def train(spec: RunSpec, hooks: RunHooks) -> RunResult:
        control.client.incr(f"{control.namespace}:fence:{spec.run_id}")  # a newer attempt
        assert not hooks.owns_run()
        hooks.fence(spec.run_id)
        raise AssertionError("the fence let a stale attempt write")

    reports = Reports()
    result = attempt(spec, store, control, Trainer(train), reports)
    assert result.outcome is Outcome.SUPERSEDED and result.state is None
    assert reports.studies == []


def test_a_device_error_releases_the_lease_and_is_raised(spec, store, control):
    with pytest.raises(DeviceError):
        attempt(spec, store, control, Trainer(DeviceError("GPU 3 is not visible")))
    assert lease_of(control, spec.run_id).holder() is None


# --- the attempt cap -----------------------------------------------------------------------


def test_a_run_that_died_in_every_attempt_fails_at_the_cap(spec, store, control):
    running = RunStatus(run_id=spec.run_id, state=RunState.RUNNING, attempt=3, epoch=7)
    write_status(store, running)
    trainer, reports = Trainer(), Reports()
    result = attempt(spec, store, control, trainer, reports)
    assert result.outcome is Outcome.FINISHED and result.state is RunState.FAILED
    assert trainer.calls == []
    error = "gave up after 3 attempts: the worker died during each (last at epoch 7)"
    assert result.error == error
    status = read_status(store, spec.run_id)
    assert status.state is RunState.FAILED and status.error == error and status.attempt == 3
    assert reports.studies == [STUDY_ID]


def test_a_run_below_the_cap_or_handed_back_trains_again(spec, store, control):
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED, attempt=3))
    trainer = Trainer()
    assert attempt(spec, store, control, trainer).outcome is Outcome.FINISHED
    assert len(trainer.calls) == 1


# --- the time limit ------------------------------------------------------------------------


def fails_at_the_time_limit(store) -> Callable[[RunSpec, RunHooks], RunResult]:
    def train(spec: RunSpec, hooks: RunHooks) -> RunResult:
        # As the runner does: the run marked failed with the exception, then raised.
        error = "TimeLimitReached: x"
        write_status(
            store, RunStatus(run_id=spec.run_id, state=RunState.FAILED, epoch=2, error=error)
        )
        raise TimeLimitReached("the run time limit passed; stopped after epoch 2")

    return train


def test_a_run_past_its_time_limit_fails_saying_so(spec, store, control):
    reports = Reports()
    result = attempt(spec, store, control, Trainer(fails_at_the_time_limit(store)), reports)
    assert result.outcome is Outcome.FINISHED and result.state is RunState.FAILED
    assert result.error == "time limit"
    status = read_status(store, spec.run_id)
    assert status.state is RunState.FAILED
    assert status.error.startswith("exceeded the run time limit of 20s at epoch 2")
    assert reports.studies == [STUDY_ID]


# --- errors and the report -----------------------------------------------------------------


def test_a_store_outage_is_retried_without_a_report(spec, store, control):
    outage = StoreUnavailable("s3://bucket: connection refused")
    reports = Reports()
    result = attempt(spec, store, control, Trainer(outage), reports)
    assert result.outcome is Outcome.STORE_UNAVAILABLE and result.exc is outage
    assert reports.studies == []


def test_a_known_error_fails_the_run_after_the_report(spec, store, control):
    reports = Reports()
    error = DatasetError("dataset.path", "not found")
    result = attempt(spec, store, control, Trainer(error), reports)
    assert result.outcome is Outcome.FINISHED and result.state is RunState.FAILED
    assert result.error == "dataset.path: not found"
    assert result.summary()["state"] == "failed"
    assert reports.studies == [STUDY_ID]


def test_an_unknown_error_is_raised_after_the_report(spec, store, control):
    reports = Reports()
    with pytest.raises(ZeroDivisionError):
        attempt(spec, store, control, Trainer(ZeroDivisionError("bug")), reports)
    assert reports.studies == [STUDY_ID]
    assert lease_of(control, spec.run_id).holder() is None


def test_a_finished_run_triggers_the_report_and_a_skipped_message_does_not(spec, store, control):
    reports = Reports()
    result = attempt(spec, store, control, Trainer(), reports)
    assert reports.studies == [STUDY_ID]
    assert result.summary() == {
        "run_id": spec.run_id,
        "outcome": "finished",
        "state": "succeeded",
        "reused": False,
    }
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED, task_id="newer"))
    attempt(spec, store, control, Trainer(), reports)
    assert reports.studies == [STUDY_ID]


def test_a_lost_lease_raised_by_the_runner_supersedes_the_attempt(spec, store, control):
    reports = Reports()
    result = attempt(spec, store, control, Trainer(LeaseLost("newer attempt")), reports)
    assert result.outcome is Outcome.SUPERSEDED and reports.studies == []

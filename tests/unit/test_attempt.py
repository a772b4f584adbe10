"""The attempt policy of workers/attempt.py that needs no Redis: plain functions on a run's
status (stale message, attempt cap, time limit) and the report trigger, on a LocalStore in a tmp
dir. The rules that act through Redis (cancel flags, leases) are in
tests/integration/test_attempt_redis.py."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from service.errors import StoreError
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status, study_key, write_status
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from tests.conftest import TINY
from workers.attempt import gave_up, is_stale, over_time_limit, record_time_limit, report_if_finished
from workers.hooks import TimeLimitReached

STUDY_ID = "tiny-0123456789abcdef"
TASK_ID_SUFFIX = "-0123456789ab"


@pytest.fixture(scope="module")
def spec() -> RunSpec:
    (run,) = build_plan(spec_from_data(TINY)).runs.values()
    return run


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


class Reports:
    def __init__(self) -> None:
        self.studies: list[str] = []

    def __call__(self, store, study_id: str) -> None:
        self.studies.append(study_id)


def test_the_message_that_owns_the_run_or_a_run_without_status_is_not_stale(spec):
    assert not is_stale(None, "any")
    own = spec.run_id + TASK_ID_SUFFIX
    assert not is_stale(RunStatus(run_id=spec.run_id, state=RunState.QUEUED, task_id=own), own)
    assert not is_stale(RunStatus(run_id=spec.run_id, state=RunState.QUEUED), own)
    newer = spec.run_id + "-ffffffffffff"
    assert is_stale(RunStatus(run_id=spec.run_id, state=RunState.QUEUED, task_id=newer), own)


def test_only_a_run_whose_worker_died_in_every_attempt_has_given_up():
    assert gave_up(None, 3) is None
    assert gave_up(RunStatus(run_id="r", state=RunState.RUNNING, attempt=2), 3) is None
    # handed back at shutdown (queued), whatever its attempt count: not a death
    assert gave_up(RunStatus(run_id="r", state=RunState.QUEUED, attempt=5), 3) is None
    assert gave_up(RunStatus(run_id="r", state=RunState.RUNNING, attempt=3), 3) is not None


def test_the_time_limit_is_seen_through_the_errors_that_wrap_it():
    try:
        try:
            raise SoftTimeLimitExceeded()
        except SoftTimeLimitExceeded as exc:
            raise StoreError("put runs/x/status.json: interrupted") from exc
    except StoreError as wrapped:
        assert over_time_limit(wrapped)
    assert over_time_limit(TimeLimitReached("stopped after epoch 1"))
    assert not over_time_limit(StoreError("access denied"))
    assert not over_time_limit(None)


def test_the_time_limit_marks_an_active_run_and_leaves_a_final_one_be(spec, store):
    reports = Reports()
    for state in (RunState.SUCCEEDED, RunState.CANCELLED, RunState.FAILED):
        write_status(store, RunStatus(run_id=spec.run_id, state=state, epoch=3))
        record_time_limit(store, spec.run_id, STUDY_ID, 20, reports)
        assert read_status(store, spec.run_id).state is state, state
    assert reports.studies == []
    record_time_limit(store, spec.run_id, STUDY_ID, 20, reports, also_failed=True)
    assert read_status(store, spec.run_id).error.startswith("exceeded the run time limit")
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.RUNNING, epoch=3))
    record_time_limit(store, spec.run_id, STUDY_ID, 20, reports)
    status = read_status(store, spec.run_id)
    assert status.state is RunState.FAILED and "of 20s at epoch 3" in status.error
    assert reports.studies == [STUDY_ID, STUDY_ID]


def test_the_report_is_written_once_the_studys_last_run_is_final(spec, store):
    report_if_finished(store, STUDY_ID)  # no such study: no report, and no error either
    variant = {"name": "baseline", "factor": None, "overrides": {}, "run_ids": [spec.run_id]}
    document = {"study_id": STUDY_ID, "spec": TINY, "variants": [variant], "run_ids": [spec.run_id]}
    store.put_json(study_key(STUDY_ID, "study.json"), document)
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.QUEUED))
    report_if_finished(store, STUDY_ID)
    assert store.list(study_key(STUDY_ID, "report/")) == []
    write_status(store, RunStatus(run_id=spec.run_id, state=RunState.FAILED, error="x"))
    report_if_finished(store, STUDY_ID)
    assert store.exists(study_key(STUDY_ID, "report/summary.json"))

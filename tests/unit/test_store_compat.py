"""A store written by an earlier version is read by this one (issue 12's constraint).

tests/fixtures/store-v1/ is what `ablate run tests/fixtures/store-v1.yaml` wrote at commit
ce0dd0c, before the lifecycle module and the study driver (checkpoints, models, TensorBoard
files and the report left out to keep it small): its ids, documents and states must read the
same, and nothing in it may be trained again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.client import Study
from service.driver import Dispatcher, StudyDriver
from service.lifecycle.documents import RunDocument
from service.lifecycle.states import RunState
from service.lifecycle.storage import effective_state, read_document, read_metrics, read_status, read_study, run_key
from service.plan import build_plan
from service.report import publish_report
from service.spec import load_spec
from service.store.local import LocalStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def store(tmp_path) -> LocalStore:
    shutil.copytree(FIXTURES / "store-v1", tmp_path / "store")
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_spec(FIXTURES / "store-v1.yaml"))


def test_the_spec_still_names_the_stored_study_and_runs(store, plan):
    assert store.list(f"studies/{plan.study_id}/") == [f"studies/{plan.study_id}/study.json"]
    stored_runs = {key.split("/")[1] for key in store.list("runs/")}
    assert stored_runs == set(plan.runs)


def test_every_stored_document_reads_into_its_model(store, plan):
    document = read_study(store, plan.study_id)
    assert document.schema_version == 1  # written without the field: read as version 1
    assert document.run_ids == sorted(plan.runs)
    assert [v.name for v in document.variants] == [v.name for v in plan.variants]
    for run_id in plan.runs:
        run = read_document(store, run_key(run_id, "run.json"), RunDocument)
        assert run.spec() == plan.runs[run_id]
        assert read_status(store, run_id).state is RunState.SUCCEEDED
        assert read_metrics(store, run_id).epochs_run == 2
        assert effective_state(store, run_id)[0] is RunState.SUCCEEDED


class NothingToTrain(Dispatcher):
    def check(self):
        pass

    def dispatch(self, study_id, run, status):
        raise AssertionError(f"{run.run_id} is stored and was dispatched again")

    def close(self):
        pass


def test_the_driver_reuses_every_stored_run_and_the_report_reads_them(store, plan):
    report = StudyDriver(store, NothingToTrain()).start(plan.document(), plan.runs)
    assert (report.queued, report.reused) == (0, plan.run_count)

    study = Study(plan.study_id, read_study(store, plan.study_id), store, control=None)
    status = study.status()
    assert status.complete and status.counts[RunState.SUCCEEDED] == plan.run_count
    assert len(study.results()) == plan.run_count
    summary, _ = publish_report(store, plan.study_id)
    assert [v.name for v in summary.variants] == [v.name for v in plan.variants]


def test_study_report_writes_the_report_once_and_reads_it_back_typed(store, plan):
    study = Study(plan.study_id, read_study(store, plan.study_id), store, control=None)
    summary = study.report()  # none stored yet: written
    assert summary.verdict and [v.name for v in summary.variants] == [v.name for v in plan.variants]
    key = f"studies/{plan.study_id}/report/summary.json"
    tag = store.etag(key)
    again = study.report()  # read back, not rewritten
    assert again == summary and store.etag(key) == tag

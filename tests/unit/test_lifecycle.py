"""The run lifecycle (service/lifecycle): the states and their predicates, the effective
state read from the store, and the documents' refusals naming the key and the field."""

from __future__ import annotations

import pytest

from service.lifecycle.documents import RunDocument, RunStatus, StudyDocument
from service.lifecycle.states import ACTIVE_STATES, FINAL_STATES, REUSABLE_STATES, RunState
from service.lifecycle.storage import DocumentError, effective_state, read_document, read_status, run_key, write_status
from service.plan import build_plan
from service.spec import spec_from_data
from service.store.local import LocalStore

RUN = "0123456789abcdef"


def test_every_state_is_either_active_or_final_and_only_results_are_reusable():
    assert {RunState.QUEUED, RunState.RUNNING} == ACTIVE_STATES
    assert set(RunState) == FINAL_STATES | ACTIVE_STATES and not FINAL_STATES & ACTIVE_STATES
    assert REUSABLE_STATES == {RunState.SUCCEEDED, RunState.DIVERGED} < FINAL_STATES
    assert RunState("failed") == "failed" and f"{RunState.CANCELLED}" == "cancelled"


def test_the_effective_state_metrics_beat_status_and_no_status_is_queued(tmp_path):
    store = LocalStore(tmp_path)
    assert effective_state(store, RUN) == (RunState.QUEUED, None)
    write_status(store, RunStatus(run_id=RUN, state=RunState.RUNNING, epoch=2, epochs=5))
    state, status = effective_state(store, RUN)
    assert state is RunState.RUNNING and status.epoch == 2
    store.put_json(run_key(RUN, "metrics.json"), {"written": "last"})  # present = succeeded
    assert effective_state(store, RUN)[0] is RunState.SUCCEEDED


def test_an_unreadable_status_counts_as_absent(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes(run_key(RUN, "status.json"), b"{not json")
    assert read_status(store, RUN) is None
    assert effective_state(store, RUN)[0] is RunState.QUEUED


def test_a_foreign_document_is_refused_naming_its_key_and_field(tmp_path):
    store = LocalStore(tmp_path)
    key = run_key(RUN, "status.json")
    store.put_json(key, {"run_id": RUN, "state": "exploded"})
    with pytest.raises(DocumentError, match=r"runs/0123456789abcdef/status.json: not a run status \(state: "):
        read_document(store, key, RunStatus)
    store.put_json(key, {"run_id": RUN, "state": "queued", "schema_version": 9})
    with pytest.raises(DocumentError, match="schema_version.*upgrade ablate"):
        read_document(store, key, RunStatus)
    store.put_json("studies/s/study.json", ["a", "list"])
    with pytest.raises(DocumentError, match=r"study.json: not a study document \(a JSON list\)"):
        read_document(store, "studies/s/study.json", StudyDocument)


def test_a_run_document_must_describe_the_run_its_id_names():
    plan = build_plan(spec_from_data({"name": "doc", "dataset": {"kind": "digits"}, "ablation": {"seeds": 1}}))
    (run,) = plan.runs.values()
    document = RunDocument.of(run)
    assert document.run_id == run.run_id and document.spec() == run
    forged = document.model_copy(update={"seed": run.seed + 1})
    with pytest.raises(ValueError, match=f"run.json of {run.run_id} describes run"):
        forged.spec()

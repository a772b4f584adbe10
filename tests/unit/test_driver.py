"""The study driver (service/driver.py): what it dispatches, how it follows, rounds and resume.

The dispatcher here trains nothing: it writes what a worker would write (status.json, then
metrics.json) so that the driver's own decisions can be checked run by run. The real
dispatchers are exercised end to end in tests/e2e/test_cli_run.py (local processes) and
tests/integration/test_distributed.py (Celery workers).
"""

from __future__ import annotations

import pytest

from service.driver import Dispatcher, StudyDriver, merge_rounds
from service.identity import RunSpec
from service.lifecycle.documents import EpochRecord, RoundDocument, RunMetrics, RunStatus
from service.lifecycle.documents import TestMetrics as ResultMetrics
from service.lifecycle.states import RunState
from service.lifecycle.storage import effective_state, read_status, round_key, run_key, write_status
from service.plan import build_plan, expand
from service.spec import spec_from_data
from service.store.local import LocalStore

SPEC = {
    "name": "driver",
    "dataset": {"kind": "digits"},
    "model": {"conv_blocks": [{"filters": 4, "kernel_size": 3}], "dense": [8]},
    "training": {"epochs": 3},
    "ablation": {"seeds": 2, "factors": [{"path": "model.dropout", "values": [0.2]}]},
}


class Recorder(Dispatcher):
    """Dispatches into a list; `finish` plays a worker that trained the run."""

    def __init__(self, store, trusts_active=True, die=()):
        self.store = store
        self.trusts_active = trusts_active
        self.sent: list[str] = []
        self.attempts: dict[str, int] = {}
        self.die = set(die)
        self._ended: dict[str, str | None] = {}
        self.checked = 0

    def check(self):
        self.checked += 1

    def message_id(self, run):
        return f"{run.run_id}-000000000000"

    def dispatch(self, study_id, run, status):
        assert read_status(self.store, run.run_id).state is RunState.QUEUED  # stored first
        self.sent.append(run.run_id)
        self.attempts[run.run_id] = status.attempt
        if run.run_id in self.die:
            write_status(self.store, RunStatus.after(status, run.run_id, RunState.RUNNING, epoch=1))
            self._ended[run.run_id] = "MemoryError: the process was killed"
        else:
            finish(self.store, run)

    def ended(self):
        ended, self._ended = self._ended, {}
        return ended

    def wait(self, seconds):
        pass

    def close(self):
        pass


def finish(store, run: RunSpec, accuracy: float = 0.9) -> None:
    history = [
        EpochRecord(epoch=e, loss=1.0 / e, accuracy=accuracy, learning_rate=0.001, epoch_seconds=2.0)
        for e in (1, 2, 3)
    ]
    test = ResultMetrics(accuracy=accuracy, loss=0.3, per_class_accuracy=[accuracy], confusion_matrix=[[1]], samples=1)
    metrics = RunMetrics(
        run_id=run.run_id, seed=run.seed, epochs_run=3, stopped_early=False, attempt=1,
        resumed_from_epoch=None, history=history, test=test, class_names=["0"], timings={}, environment={},
    )
    store.put_json(run_key(run.run_id, "metrics.json"), metrics.model_dump(mode="json"))
    write_status(store, RunStatus(run_id=run.run_id, state=RunState.SUCCEEDED, epoch=3, epochs=3, history=history))


@pytest.fixture(scope="module")
def plan():
    return build_plan(spec_from_data(SPEC))


def test_start_dispatches_only_runs_neither_stored_nor_in_flight(tmp_path, plan):
    store = LocalStore(tmp_path)
    stored, queued, failed, fresh = sorted(plan.runs)
    finish(store, plan.runs[stored])
    write_status(store, RunStatus(run_id=queued, state=RunState.QUEUED, task_id="x"))
    write_status(store, RunStatus(run_id=failed, state=RunState.FAILED, attempt=2, error="boom"))
    recorder = Recorder(store)

    report = StudyDriver(store, recorder).start(plan.document(), plan.runs)

    assert (report.queued, report.already_queued, report.reused) == (2, 1, 1)
    assert sorted(recorder.sent) == sorted([failed, fresh])
    assert recorder.checked == 1
    assert recorder.attempts[failed] == 2  # the attempt count carries over
    assert store.exists(run_key(fresh, "run.json")) and store.exists(run_key(stored, "run.json"))


class BrokerDown(Recorder):
    """Sends until the `fail_at`-th message, whose send raises as a broker gone mid-submission."""

    def __init__(self, store, fail_at):
        super().__init__(store)
        self.fail_at = fail_at

    def dispatch(self, study_id, run, status):
        if len(self.sent) == self.fail_at:
            raise ConnectionError("the broker went away")
        super().dispatch(study_id, run, status)


def test_a_run_whose_send_failed_is_not_left_queued_and_the_next_start_sends_it(tmp_path, plan):
    store = LocalStore(tmp_path)
    failed_before = sorted(plan.runs)[-1]
    earlier = RunStatus(run_id=failed_before, state=RunState.FAILED, attempt=2, error="boom")
    write_status(store, earlier)
    order = sorted(plan.runs, key=lambda run_id: run_id != failed_before)  # the failed run first
    runs = {run_id: plan.runs[run_id] for run_id in order}

    with pytest.raises(ConnectionError):
        StudyDriver(store, BrokerDown(store, fail_at=0)).start(plan.document(), runs)
    restored = read_status(store, failed_before)
    assert (restored.state, restored.attempt, restored.error) == (RunState.FAILED, 2, "boom")

    broken = BrokerDown(store, fail_at=1)
    with pytest.raises(ConnectionError):
        StudyDriver(store, broken).start(plan.document(), runs)
    unsent = order[1]
    assert read_status(store, unsent) is None  # no status: queued by nobody, sent again below
    assert effective_state(store, failed_before)[0] is RunState.SUCCEEDED

    again = Recorder(store)
    report = StudyDriver(store, again).start(plan.document(), runs)
    assert unsent in again.sent and report.already_queued == 0
    assert report.reused == 1 and report.queued == plan.run_count - 1


def test_a_dispatcher_whose_runs_die_with_the_driver_sends_active_runs_again(tmp_path, plan):
    store = LocalStore(tmp_path)
    left_running = sorted(plan.runs)[0]
    write_status(store, RunStatus(run_id=left_running, state=RunState.RUNNING, epoch=2, epochs=3))
    recorder = Recorder(store, trusts_active=False)

    StudyDriver(store, recorder).start(plan.document(), plan.runs)

    assert sorted(recorder.sent) == sorted(plan.runs)


def test_follow_ends_when_every_run_is_final_and_records_a_run_whose_attempt_died(tmp_path, plan):
    store = LocalStore(tmp_path)
    dead = sorted(plan.runs)[1]
    recorder = Recorder(store, trusts_active=False, die=[dead])

    final = StudyDriver(store, recorder, poll_seconds=0).run(plan.document(), plan.runs)

    assert final.complete and final.counts[RunState.FAILED] == 1
    assert final.counts[RunState.SUCCEEDED] == plan.run_count - 1
    assert final.errors == {dead: "MemoryError: the process was killed"}
    status = read_status(store, dead)
    assert status.state is RunState.FAILED and status.epoch == 1
    assert effective_state(store, dead)[0] is RunState.FAILED


def test_follow_without_a_dispatcher_times_out_naming_the_study(tmp_path, plan):
    store = LocalStore(tmp_path)
    driver = StudyDriver(store, Recorder(store))
    driver.dispatcher.dispatch = lambda *args: None  # queued, never trained
    driver.start(plan.document(), plan.runs)

    with pytest.raises(TimeoutError, match=plan.study_id):
        StudyDriver(store, poll_seconds=0).follow(plan.document(), timeout=0)


def test_the_eta_counts_the_epochs_left_at_the_measured_epoch_time(tmp_path, plan):
    store = LocalStore(tmp_path)
    first, second, *rest = sorted(plan.runs)
    finish(store, plan.runs[first])  # 3 epochs of 2 s
    write_status(store, RunStatus(run_id=second, state=RunState.RUNNING, epoch=1, epochs=3))
    for run_id in rest:
        write_status(store, RunStatus(run_id=run_id, state=RunState.QUEUED, epochs=3))

    status = StudyDriver(store).snapshot(plan.document())

    # (2 epochs left running + 3 + 3 queued) x 2 s, one run training at a time
    assert status.eta_seconds == pytest.approx(16.0)
    assert status.running == {second: (1, 3)}
    assert not status.complete and status.finished == 1


def rounds_planner(store, spec, plan, calls):
    """Round 0: the baseline; round 1: a dropout variant on two fresh seeds; then done."""

    def plan_round(done):
        calls.append(len(done))
        if len(done) == 0:
            variants = plan.variants[:1]
            runs = {r: plan.runs[r] for r in variants[0].run_ids}
            return RoundDocument(
                study_id="", index=0, kind="baseline", reason="its seeds", variants=variants, runs=runs
            )
        if len(done) == 1:
            assert all(effective_state(store, r)[0].is_final for r in done[0].runs)
            variants, runs = expand(spec, [("dropout 0.4", "dropout", {"model.dropout": 0.4}, "ablation")], [7, 8])
            return RoundDocument(study_id="", index=1, kind="search", reason="overfits", variants=variants, runs=runs)
        return None

    return plan_round


def test_rounds_are_stored_before_dispatch_and_replayed_on_resume_without_training_twice(tmp_path, plan):
    store = LocalStore(tmp_path)
    spec = spec_from_data(SPEC)
    calls: list[int] = []
    first = Recorder(store)
    rounds = StudyDriver(store, first, poll_seconds=0).run_rounds(
        plan.study_id, rounds_planner(store, spec, plan, calls), plan.document()
    )

    assert [r.kind for r in rounds] == ["baseline", "search"] and calls == [0, 1, 2]
    assert store.exists(round_key(plan.study_id, 0)) and store.exists(round_key(plan.study_id, 1))
    assert len(first.sent) == 4
    document = store.get_json(f"studies/{plan.study_id}/study.json")
    assert [v["name"] for v in document["variants"]] == ["baseline", "dropout 0.4"]
    assert sorted(document["run_ids"]) == sorted(first.sent)

    # The driving process died after its rounds; the same command again replays the stored
    # rounds (the planner is asked only for the round after them) and trains nothing.
    again_calls: list[int] = []
    again = Recorder(store)
    replayed = StudyDriver(store, again, poll_seconds=0).run_rounds(
        plan.study_id, rounds_planner(store, spec, plan, again_calls), plan.document()
    )
    assert [r.index for r in replayed] == [0, 1] and again_calls == [2] and again.sent == []


def test_a_variant_planned_again_with_more_seeds_keeps_one_entry(plan):
    base = plan.document()
    baseline = plan.variants[0]
    more = baseline.model_copy(update={"run_ids": [*baseline.run_ids, "f" * 16]})
    rounds = [
        RoundDocument(study_id=plan.study_id, index=i, kind="k", reason="r", variants=[v], runs={})
        for i, v in enumerate([baseline, more])
    ]
    merged = merge_rounds(base, rounds)
    assert [v.name for v in merged.variants] == ["baseline"]
    assert merged.variants[0].run_ids == [*baseline.run_ids, "f" * 16]
    assert merged.run_ids == sorted(merged.variants[0].run_ids)

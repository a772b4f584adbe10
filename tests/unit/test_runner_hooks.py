"""The runner's hooks (workers/hooks.py) and what `workers.runner.run` makes of each stop they
ask for, on tiny real runs: cancelled, handed back at shutdown, lease lost. (The time limit's
stop is tested in tests/integration/test_runner.py, divergence there and in test_tensorboard.)"""

from __future__ import annotations

import itertools

import pytest

from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status, run_key
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from workers.hooks import NO_HOOKS, LeaseLost, RunHooks, RunResult, StopReason


def only_run(data: dict):
    (run,) = build_plan(spec_from_data(data)).runs.values()
    return run


def answers(*values: bool):
    """A hook answering `values` in turn, then the last one for good."""
    it = itertools.chain(values, itertools.repeat(values[-1]))
    return lambda: next(it)


def test_no_hooks_never_stop_a_run_and_always_own_it():
    assert NO_HOOKS.stop_requested() is None
    assert NO_HOOKS.owns_run()
    NO_HOOKS.fence("r1")  # does not raise


def test_the_fence_raises_lease_lost_naming_the_run():
    with pytest.raises(LeaseLost, match="run r1: a newer attempt owns the run"):
        RunHooks(owns_run=lambda: False).fence("r1")


def test_requested_stops_in_order_of_precedence():
    yes = lambda: True  # noqa: E731
    assert (
        RunHooks(cancelled=yes, shutting_down=yes, time_up=yes).stop_requested()
        is StopReason.CANCELLED
    )
    assert RunHooks(shutting_down=yes, time_up=yes).stop_requested() is StopReason.HANDED_BACK
    assert RunHooks(time_up=yes).stop_requested() is StopReason.TIME_LIMIT
    assert all(
        reason.is_requested
        for reason in (StopReason.CANCELLED, StopReason.HANDED_BACK, StopReason.TIME_LIMIT)
    )
    assert not any(
        reason.is_requested
        for reason in (StopReason.DIVERGED, StopReason.EARLY_STOP, StopReason.LEASE_LOST)
    )


def test_a_result_says_whether_the_run_was_handed_back():
    assert RunResult("r", RunState.QUEUED, False, stop=StopReason.HANDED_BACK).handed_back
    assert not RunResult("r", RunState.CANCELLED, False, stop=StopReason.CANCELLED).handed_back
    assert not RunResult("r", RunState.SUCCEEDED, False).handed_back


def test_a_cancelled_run_ends_cancelled_and_resumes_from_its_checkpoint(tiny_spec, tmp_path):
    from workers.runner import run

    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)  # 3 epochs
    result = run(spec, store, RunHooks(cancelled=answers(True)))
    assert (result.state, result.stop, result.epochs_run) == (
        RunState.CANCELLED,
        StopReason.CANCELLED,
        1,
    )
    status = read_status(store, spec.run_id)
    assert status.state is RunState.CANCELLED and status.epoch == 1
    assert store.get_json(run_key(spec.run_id, "checkpoints/latest.json")) == {"epoch": 1}
    assert not store.exists(run_key(spec.run_id, "metrics.json"))

    again = run(spec, store)  # submitted again: trains on from the checkpoint
    assert again.state is RunState.SUCCEEDED and again.stop is None and not again.reused
    assert store.get_json(run_key(spec.run_id, "metrics.json"))["resumed_from_epoch"] == 1


def test_a_run_handed_back_at_shutdown_is_queued_again_without_a_worker(tiny_spec, tmp_path):
    from workers.runner import run

    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    result = run(spec, store, RunHooks(shutting_down=answers(False, True)))
    assert result.handed_back and result.state is RunState.QUEUED and result.epochs_run == 2
    status = read_status(store, spec.run_id)
    assert status.state is RunState.QUEUED and status.worker is None and status.epoch == 2
    assert store.get_json(run_key(spec.run_id, "checkpoints/latest.json")) == {"epoch": 2}


def test_a_run_whose_lease_is_lost_raises_and_writes_nothing_more(tiny_spec, tmp_path):
    from workers.runner import run

    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    with pytest.raises(LeaseLost):
        run(spec, store, RunHooks(owns_run=answers(True, False)))
    status = read_status(store, spec.run_id)
    # The first epoch's status and checkpoint, nothing of the second, no failure recorded:
    # the newer attempt owns the run's files.
    assert status.state is RunState.RUNNING and status.epoch == 1 and status.error is None
    assert store.get_json(run_key(spec.run_id, "checkpoints/latest.json")) == {"epoch": 1}
    assert not store.exists(run_key(spec.run_id, "metrics.json"))
    assert not store.exists(run_key(spec.run_id, "model.keras"))

"""The checkpoint writer: epochs are stored in order on its thread, training goes on meanwhile,
and a failed write reaches the training thread instead of vanishing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.store import LocalStore
from workers import checkpoint
from workers.checkpoint import TrainingState, Writer


def test_writes_run_in_order_on_another_thread():
    done, threads = [], set()
    writer = Writer()
    for epoch in range(1, 6):
        writer.submit(lambda epoch=epoch: (done.append(epoch), threads.add(threading.get_ident())))
    writer.close()
    assert done == [1, 2, 3, 4, 5]
    assert threading.get_ident() not in threads


def test_submit_waits_while_a_write_is_pending_and_one_is_in_progress():
    release = threading.Event()
    started = threading.Event()
    writer = Writer()
    writer.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    writer.submit(lambda: None)  # waits in the queue
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third epoch must wait for the store, not pile up in memory"
    release.set()
    third.join(10)
    writer.close()


def test_a_failed_write_is_raised_in_the_training_thread_and_later_writes_are_skipped():
    done = []
    writer = Writer()

    def fail():
        raise OSError("disk full")

    writer.submit(fail)
    writer.submit(lambda: done.append("after"))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == []


def test_close_while_handling_another_error_waits_for_writes_and_does_not_mask_it():
    done = []
    writer = Writer()
    writer.submit(lambda: done.append(1))
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    writer.close(raise_failure=False)
    assert done == [1]


def test_a_snapshot_does_not_change_when_training_goes_on(tmp_path):
    store = LocalStore(tmp_path)
    weights = np.zeros(3, dtype=np.float32)
    state = TrainingState(epoch=1, history=[{"epoch": 1}])
    values, frozen = checkpoint.snapshot([weights], state)
    weights += 1  # the next epoch trains
    state.epoch, state.history = 2, [*state.history, {"epoch": 2}]
    state.history.append({"epoch": 3})
    checkpoint.save(store, "run", values, frozen)

    restored = [np.ones(3, dtype=np.float32)]

    class Variable:
        shape = (3,)

        def assign(self, value):
            restored[0] = value

    back = checkpoint.restore(store, "run", [Variable()])
    assert back.epoch == 1 and back.history == [{"epoch": 1}]
    assert restored[0].tolist() == [0.0, 0.0, 0.0]

"""The epoch recorder (workers/callbacks.py) on a tiny Keras model, fed the epoch logs a fit
would give it: what it records and persists, and the one reason it stops training for
(diverged, lease lost, cancelled, handed back, time limit, early stop), with reduce-on-plateau
and early stopping's state carried over a resume."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import pytest

from service.lifecycle.documents import RunStatus
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status, run_key
from service.spec.models import TrainConfig
from service.store import LocalStore
from workers import checkpoint
from workers.callbacks import EpochRecorder
from workers.checkpoint import TrainingState
from workers.hooks import NO_HOOKS, RunHooks, StopReason
from workers.optim import current_learning_rate

RUN_ID = "0123456789abcdef"


class Harness:
    """A recorder on a compiled two-layer model, a LocalStore and a real checkpoint writer."""

    def __init__(self, store: LocalStore, config: dict, hooks: RunHooks = NO_HOOKS, state=None):
        self.store = store
        self.config = TrainConfig.model_validate(config)
        self.model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        self.model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        self.model.optimizer.build(self.model.trainable_variables)
        self.status = RunStatus(run_id=RUN_ID, state=RunState.RUNNING, attempt=1)
        self.state = state or TrainingState()
        self.writer = checkpoint.Writer()
        self.recorder = EpochRecorder(
            self.config,
            store,
            self.status,
            self.state,
            lambda: [*self.model.weights, *self.model.optimizer.variables],
            self.writer,
            hooks,
        )
        self.recorder.set_model(self.model)

    def epoch(self, index: int, loss: float = 1.0, **logs: float) -> StopReason | None:
        """One epoch (0-based `index`) with these logs; the stop reason after it."""
        self.model.stop_training = False  # as fit does, until a callback sets it
        self.recorder.on_epoch_begin(index)
        self.recorder.on_epoch_end(index, {"loss": loss, "accuracy": 0.5, **logs})
        return self.recorder.stop_reason

    def stored(self) -> tuple[int | None, RunStatus | None]:
        """After the writer is done: the newest checkpoint's epoch and status.json."""
        self.writer.close()
        latest = run_key(RUN_ID, "checkpoints/latest.json")
        epoch = self.store.get_json(latest)["epoch"] if self.store.exists(latest) else None
        return epoch, read_status(self.store, RUN_ID)


def config(epochs: int = 5, **sections) -> dict:
    training = {"epochs": epochs, **sections.pop("training", {})}
    return {"training": training, **sections}


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path)


def asked(answer: bool, calls: list[str], name: str) -> Callable[[], bool]:
    def hook() -> bool:
        calls.append(name)
        return answer

    return hook


def test_each_epoch_is_recorded_checkpointed_and_streamed_to_status(store):
    harness = Harness(store, config(epochs=5))
    assert harness.epoch(0, loss=1.0, val_loss=1.2) is None
    assert harness.epoch(1, loss=0.8, val_loss=1.1) is None
    assert not harness.model.stop_training
    epoch, status = harness.stored()
    assert epoch == 2 and harness.state.epoch == 2
    assert [record.epoch for record in status.history] == [1, 2]
    assert status.history[1].loss == 0.8 and status.history[1].val_loss == 1.1
    assert status.epoch == 2 and status.state is RunState.RUNNING
    assert harness.recorder.checkpoint_seconds > 0


def test_a_nan_loss_stops_the_run_as_diverged_and_stores_nothing_of_that_epoch(store):
    harness = Harness(store, config(epochs=5))
    harness.epoch(0, loss=1.0)
    assert harness.epoch(1, loss=math.nan) is StopReason.DIVERGED
    assert harness.model.stop_training
    epoch, status = harness.stored()
    assert epoch == 1 and status.epoch == 1  # the diverged epoch is the runner's to write
    assert harness.state.epoch == 2 and harness.status.history[-1].loss is None


def test_an_infinite_loss_is_divergence_too(store):
    harness = Harness(store, config(epochs=5))
    assert harness.epoch(0, loss=math.inf) is StopReason.DIVERGED


def test_a_lost_lease_stops_the_run_and_writes_nothing_more(store):
    owner = [True]
    harness = Harness(store, config(epochs=5), RunHooks(owns_run=lambda: owner[0]))
    harness.epoch(0)
    owner[0] = False
    assert harness.epoch(1) is StopReason.LEASE_LOST
    assert harness.model.stop_training
    epoch, status = harness.stored()
    assert epoch == 1 and status.epoch == 1


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        ("cancelled", StopReason.CANCELLED),
        ("shutting_down", StopReason.HANDED_BACK),
        ("time_up", StopReason.TIME_LIMIT),
    ],
)
def test_a_requested_stop_ends_training_after_the_epochs_checkpoint(store, hook, reason):
    answers = {"cancelled": [False], "shutting_down": [False], "time_up": [False]}
    hooks = RunHooks(**{name: (lambda a=answer: a[0]) for name, answer in answers.items()})
    harness = Harness(store, config(epochs=5), hooks)
    assert harness.epoch(0) is None
    answers[hook][0] = True
    assert harness.epoch(1) is reason and harness.model.stop_training
    epoch, status = harness.stored()
    # The checkpoint of the epoch it stopped at is stored; its status is the runner's to write.
    assert epoch == 2 and status.epoch == 1


def test_a_cancel_outranks_a_shutdown_and_the_time_limit(store):
    calls: list[str] = []
    hooks = RunHooks(
        cancelled=asked(True, calls, "cancelled"),
        shutting_down=asked(True, calls, "shutting_down"),
        time_up=asked(True, calls, "time_up"),
    )
    assert Harness(store, config(epochs=5), hooks).epoch(0) is StopReason.CANCELLED
    assert calls == ["cancelled"]


def test_the_last_epoch_asks_no_hook_and_streams_its_status(store):
    calls: list[str] = []
    hooks = RunHooks(
        cancelled=asked(True, calls, "cancelled"),
        shutting_down=asked(True, calls, "shutting_down"),
        time_up=asked(True, calls, "time_up"),
    )
    harness = Harness(store, config(epochs=1), hooks)
    assert harness.epoch(0) is None and calls == []
    epoch, status = harness.stored()
    assert epoch == 1 and status.epoch == 1


def test_early_stopping_stops_after_patience_epochs_without_improvement(store):
    rule = {"monitor": "val_loss", "patience": 1, "min_delta": 0.05}
    calls: list[str] = []
    harness = Harness(
        store,
        config(epochs=10, training={"early_stopping": rule}),
        RunHooks(cancelled=asked(False, calls, "cancelled")),
    )
    assert harness.epoch(0, val_loss=1.0) is None
    assert harness.epoch(1, val_loss=0.9) is None  # improved by more than min_delta
    assert harness.epoch(2, val_loss=0.88) is None  # by less: wait 1, not over the patience
    assert (harness.state.best, harness.state.wait) == (0.9, 1)
    calls.clear()
    assert harness.epoch(3, val_loss=0.87) is StopReason.EARLY_STOP
    assert harness.model.stop_training and calls == []  # a stopped run asks no hook
    epoch, status = harness.stored()
    assert epoch == 4 and status.epoch == 4  # an early stop's status streams as usual


def test_early_stopping_on_accuracy_waits_for_a_higher_value(store):
    rule = {"monitor": "val_accuracy", "patience": 0}
    harness = Harness(store, config(epochs=10, training={"early_stopping": rule}))
    assert harness.epoch(0, val_accuracy=0.5) is None
    assert harness.epoch(1, val_accuracy=0.6) is None
    assert harness.epoch(2, val_accuracy=0.55) is StopReason.EARLY_STOP


def test_early_stoppings_count_carries_over_a_resume(store):
    rule = {"monitor": "val_loss", "patience": 2}
    resumed = TrainingState(epoch=3, best=0.5, wait=2)
    harness = Harness(store, config(epochs=10, training={"early_stopping": rule}), state=resumed)
    assert harness.epoch(3, val_loss=0.6) is StopReason.EARLY_STOP


def test_reduce_on_plateau_lowers_the_rate_after_patience_flat_epochs_down_to_its_floor(store):
    schedule = {"name": "reduce_on_plateau", "monitor": "loss", "patience": 1, "factor": 0.5}
    harness = Harness(store, config(epochs=10, schedule={**schedule, "min_lr": 0.03}))
    optimizer = harness.model.optimizer
    harness.epoch(0, loss=1.0)
    harness.epoch(1, loss=1.0)  # flat: wait 1
    assert current_learning_rate(optimizer) == pytest.approx(0.1)
    harness.epoch(2, loss=1.0)  # wait 2 > patience: halved, the wait starts over
    assert current_learning_rate(optimizer) == pytest.approx(0.05)
    assert harness.state.plateau_wait == 0 and harness.state.learning_rate == pytest.approx(0.05)
    harness.epoch(3, loss=1.0)
    harness.epoch(4, loss=1.0)
    assert current_learning_rate(optimizer) == pytest.approx(0.03)  # the floor, not 0.025
    harness.epoch(5, loss=0.5)  # improved: the wait starts over
    assert harness.state.plateau_wait == 0 and harness.state.plateau_best == 0.5
    # Each epoch records the rate it trained with (set when it began).
    rates = [record.learning_rate for record in harness.status.history]
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.03])
    assert harness.recorder.stop_reason is None

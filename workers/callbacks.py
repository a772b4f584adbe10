"""The one Keras callback a run trains with: record the epoch, act on it, persist it.

At each epoch end it appends the epoch to the history, stops a diverged run (NaN/inf loss),
applies reduce-on-plateau and early stopping with state that survives a resume, and hands a
copy of the variables to the checkpoint writer, which stores the checkpoint and then streams the
history into `status.json` while the next epoch trains. It uses epoch hooks only, so Keras never
syncs the device per batch on its account.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras

from service.lifecycle import EpochRecord, RunStatus, write_status
from service.spec.models import ReduceOnPlateau, TrainConfig
from service.store.base import Store
from workers import checkpoint
from workers.checkpoint import TrainingState
from workers.optim import current_learning_rate, set_learning_rate


class EpochRecorder(keras.callbacks.Callback):
    def __init__(
        self,
        config: TrainConfig,
        store: Store,
        status: RunStatus,
        state: TrainingState,
        variables: Callable[[], list],
        writer: checkpoint.Writer,
        should_stop: Callable[[], bool] | None = None,
        still_owner: Callable[[], bool] | None = None,
        should_pause: Callable[[], bool] | None = None,
        time_up: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.status = status
        self.state = state
        self.variables = variables
        self.writer = writer
        self.should_stop = should_stop
        self.still_owner = still_owner
        self.should_pause = should_pause
        self.time_up = time_up
        self.cancelled = False
        self.paused = False
        self.timed_out = False
        self.lost = False
        self.diverged_epoch: int | None = None
        self.stopped_early = False
        self.checkpoint_seconds = 0.0
        self._started = 0.0
        self._learning_rate = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._learning_rate = current_learning_rate(self.model.optimizer)
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.writer.raise_failure()  # an earlier epoch's checkpoint could not be stored
        logs = logs or {}
        record = EpochRecord(
            epoch=epoch + 1,
            loss=_finite_or_none(logs.get("loss")),
            accuracy=_finite_or_none(logs.get("accuracy")),
            val_loss=_finite_or_none(logs.get("val_loss")),
            val_accuracy=_finite_or_none(logs.get("val_accuracy")),
            learning_rate=self._learning_rate,
            epoch_seconds=round(seconds, 4),
        )
        started = time.perf_counter()
        self.state.epoch = epoch + 1
        self.state.history.append(record.model_dump())
        self.status.epoch = epoch + 1
        self.status.history.append(record)

        if record.loss is None:
            # NaN or inf: the run diverged; nothing after this epoch is worth keeping.
            self.diverged_epoch = epoch + 1
            self.model.stop_training = True
            self.checkpoint_seconds += time.perf_counter() - started
            return
        if self.still_owner is not None and not self.still_owner():
            # A newer attempt owns the run now: write nothing more.
            self.lost = True
            self.model.stop_training = True
            return
        self._reduce_on_plateau(logs)
        self._early_stopping(logs)
        self.state.learning_rate = current_learning_rate(self.model.optimizer)
        values, state = checkpoint.snapshot(self.variables(), self.state)
        unfinished = epoch + 1 < self.config.training.epochs and not self.model.stop_training
        if unfinished and self.should_stop is not None and self.should_stop():
            # Stop at an epoch boundary, just after this checkpoint: nothing is lost.
            self.cancelled = True
            self.model.stop_training = True
        elif unfinished and self.should_pause is not None and self.should_pause():
            # The worker is shutting down: hand the run back, to resume from this checkpoint.
            self.paused = True
            self.model.stop_training = True
        elif unfinished and self.time_up is not None and self.time_up():
            self.timed_out = True
            self.model.stop_training = True
        # The runner writes the final status of a stopped run, once the writer is done.
        stopped = self.cancelled or self.paused or self.timed_out
        status = None if stopped else self.status.model_copy(deep=True)
        store, run_id = self.store, self.status.run_id

        def store_epoch() -> None:
            checkpoint.save(store, run_id, values, state)
            if status is not None:
                write_status(store, status)

        self.writer.submit(store_epoch)
        self.checkpoint_seconds += time.perf_counter() - started

    def _reduce_on_plateau(self, logs: dict) -> None:
        schedule = self.config.schedule
        if not isinstance(schedule, ReduceOnPlateau):
            return
        value = logs.get(schedule.monitor)
        if value is None:
            return
        if _improved(value, self.state.plateau_best, schedule.monitor, 0.0):
            self.state.plateau_best = float(value)
            self.state.plateau_wait = 0
            return
        self.state.plateau_wait += 1
        if self.state.plateau_wait > schedule.patience:
            lowered = max(current_learning_rate(self.model.optimizer) * schedule.factor, schedule.min_lr)
            set_learning_rate(self.model.optimizer, lowered)
            self.state.plateau_wait = 0

    def _early_stopping(self, logs: dict) -> None:
        rule = self.config.training.early_stopping
        if rule is None:
            return
        value = logs.get(rule.monitor)
        if value is None:
            return
        if _improved(value, self.state.best, rule.monitor, rule.min_delta):
            self.state.best = float(value)
            self.state.wait = 0
            return
        self.state.wait += 1
        if self.state.wait > rule.patience:
            self.stopped_early = True
            self.model.stop_training = True


def _improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if best is None:
        return True
    if "loss" in monitor:
        return value < best - min_delta
    return value > best + min_delta


def _finite_or_none(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None

"""The one Keras callback a run trains with: record the epoch, act on it, persist it.

At each epoch end it appends the epoch to the history, stops a diverged run (NaN/inf loss),
applies reduce-on-plateau and early stopping with state that survives a resume, asks the
caller's hooks whether to stop (cancelled, handed back, out of time, lease lost), and hands a
copy of the variables to the checkpoint writer, which stores the checkpoint and then streams the
history into `status.json` while the next epoch trains. It uses epoch hooks only, so Keras never
syncs the device per batch on its account.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras

from service.lifecycle.documents import EpochRecord, RunStatus
from service.lifecycle.storage import write_status
from service.spec.models import TrainConfig
from service.spec.network import ReduceOnPlateau
from service.store.base import Store
from workers import checkpoint
from workers.checkpoint import TrainingState
from workers.hooks import NO_HOOKS, RunHooks, StopReason
from workers.optim import current_learning_rate, set_learning_rate


class EpochRecorder(keras.callbacks.Callback):
    """Records each epoch and stops training for one `StopReason` (None while it trains on).
    `hooks` are the caller's questions (cancel, shutdown, time limit, lease fence)."""

    def __init__(
        self,
        config: TrainConfig,
        store: Store,
        status: RunStatus,
        state: TrainingState,
        variables: Callable[[], list],
        writer: checkpoint.Writer,
        hooks: RunHooks = NO_HOOKS,
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.status = status
        self.state = state
        self.variables = variables
        self.writer = writer
        self.hooks = hooks
        self.stop_reason: StopReason | None = None
        self.checkpoint_seconds = 0.0
        self._started = 0.0
        self._learning_rate = 0.0

    def _stop(self, reason: StopReason) -> None:
        self.stop_reason = reason
        self.model.stop_training = True

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
            self._stop(StopReason.DIVERGED)
            self.checkpoint_seconds += time.perf_counter() - started
            return
        if not self.hooks.owns_run():
            # A newer attempt owns the run now: write nothing more.
            self._stop(StopReason.LEASE_LOST)
            return
        self._reduce_on_plateau(logs)
        self._early_stopping(logs)
        self.state.learning_rate = current_learning_rate(self.model.optimizer)
        values, state = checkpoint.snapshot(self.variables(), self.state)
        if self.stop_reason is None and epoch + 1 < self.config.training.epochs:
            # Stop at an epoch boundary, just after this checkpoint: nothing is lost.
            requested = self.hooks.stop_requested()
            if requested is not None:
                self._stop(requested)
        # The runner writes the final status of a stop it was asked for, once the writer is done.
        requested_stop = self.stop_reason is not None and self.stop_reason.is_requested
        status = None if requested_stop else self.status.model_copy(deep=True)
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
            lowered = max(
                current_learning_rate(self.model.optimizer) * schedule.factor, schedule.min_lr
            )
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
            self._stop(StopReason.EARLY_STOP)


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

"""The files a run and a study keep in the store, their keys and their pydantic models.

Layout (DESIGN.md): `runs/{run_id}/run.json, status.json, checkpoints/, model.keras, metrics.json`
and `studies/{study_id}/study.json, report/`. `metrics.json` is written once, last: its presence
means the run succeeded.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import KeyNotFound, StoreError
from service.store.base import Store

RunState = Literal["queued", "running", "succeeded", "failed", "diverged", "cancelled"]
TERMINAL_STATES = frozenset({"succeeded", "diverged"})
"""States whose result is final: such a run is reused, never retrained."""


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


def study_key(study_id: str, name: str) -> str:
    return f"studies/{study_id}/{name}"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class EpochRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int
    """1-based epoch number."""
    loss: float | None
    accuracy: float | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float
    epoch_seconds: float


class RunStatus(BaseModel):
    """`runs/{run_id}/status.json`, rewritten at every state change and every epoch."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    state: RunState
    attempt: int = 0
    epoch: int = 0
    epochs: int = 0
    updated_at: str = Field(default_factory=utcnow)
    task_id: str | None = None
    """The queue message that owns the run; older messages for the run are stale and skipped."""
    queued_at: str | None = None
    """When the client queued the run (distributed mode)."""
    started_at: str | None = None
    """When the current attempt started training."""
    worker: str | None = None
    error: str | None = None
    diverged_epoch: int | None = None
    resumed_from_epoch: int | None = None
    restart_reason: str | None = None
    """Why this attempt trained from scratch although a checkpoint was stored (another precision
    policy, say); also in metrics.json's environment."""
    gpu_memory_peak_mb: float | None = None
    """A failed run's allocator peak (a successful run's is in metrics.json's environment)."""
    gpu_memory_driver_mb: float | None = None
    """A failed run's process GPU memory as the driver reports it (context included)."""
    history: list[EpochRecord] = Field(default_factory=list)

    @classmethod
    def after(cls, previous: RunStatus | None, run_id: str, state: RunState, **fields: Any) -> RunStatus:
        """A fresh status for `run_id` that carries over the attempt count and epoch of `previous`."""
        carried = {"attempt": previous.attempt, "epoch": previous.epoch} if previous else {}
        return cls(run_id=run_id, state=state, **{**carried, **fields})


class TestMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accuracy: float
    loss: float
    per_class_accuracy: list[float | None]
    """Accuracy per class; None for a class absent from the test split."""
    confusion_matrix: list[list[int]]
    """Rows: true class, columns: predicted class."""
    samples: int


class RunMetrics(BaseModel):
    """`runs/{run_id}/metrics.json`: the result of a succeeded run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    state: Literal["succeeded"] = "succeeded"
    seed: int
    epochs_run: int
    stopped_early: bool
    attempt: int
    resumed_from_epoch: int | None
    history: list[EpochRecord]
    test: TestMetrics
    class_names: list[str]
    timings: dict[str, float]
    environment: dict[str, Any]
    finished_at: str = Field(default_factory=utcnow)


def read_status(store: Store, run_id: str) -> RunStatus | None:
    try:
        return RunStatus.model_validate(store.get_json(run_key(run_id, "status.json")))
    except KeyNotFound:
        return None
    except (StoreError, ValueError):
        return None  # an unreadable status is treated as absent; the run starts over cleanly


def write_status(store: Store, status: RunStatus) -> None:
    status.updated_at = utcnow()
    store.put_json(run_key(status.run_id, "status.json"), status.model_dump(mode="json"))


def read_metrics(store: Store, run_id: str) -> RunMetrics | None:
    try:
        return RunMetrics.model_validate(store.get_json(run_key(run_id, "metrics.json")))
    except KeyNotFound:
        return None

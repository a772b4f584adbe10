"""The typed, versioned pydantic models of every document the control side and the workers
exchange: `study.json` (`StudyDocument`), `run.json` (`RunDocument`), `status.json`
(`RunStatus`), `metrics.json` (`RunMetrics`), a study's rounds (`RoundDocument`) and repair
(`RepairDocument`), and the queue message (`TrainMessage`). A document written before a field
existed reads as version 1; a newer version is refused.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.identity import RUN_ID_PATTERN, RunSpec
from service.lifecycle.states import RunState
from service.text import printable

DOCUMENT_VERSION = 1
"""Version of the documents below; a reader refuses a newer one instead of misreading it."""


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Document(BaseModel):
    """A versioned document; older documents (without the field) read as version 1."""

    schema_version: int = DOCUMENT_VERSION

    @field_validator("schema_version")
    @classmethod
    def _readable_version(cls, version: int) -> int:
        if not 1 <= version <= DOCUMENT_VERSION:
            raise ValueError(
                f"schema_version {version}: this version of ablate reads 1 to {DOCUMENT_VERSION}"
                + (" (upgrade ablate)" if version > DOCUMENT_VERSION else "")
            )
        return version


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


class RunStatus(Document):
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


class RunMetrics(Document):
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


class Variant(BaseModel):
    """One variant of a study: a name, the factor it changes (None for the baseline), the
    overrides it applies to the baseline, and its runs (one per seed)."""

    name: str
    factor: str | None
    overrides: dict[str, Any]
    run_ids: list[str]


class StudyDocument(Document):
    """`studies/{study_id}/study.json`: the spec and its expanded plan. A study planned in
    rounds (a staged diagnosis) holds the union of every round's variants and runs so far."""

    study_id: str
    spec: dict[str, Any]
    variants: list[Variant]
    run_ids: list[str]

    @model_validator(mode="before")
    @classmethod
    def _a_study(cls, data: Any) -> Any:
        # Checked first, with the words a user can act on: a run id becomes a store key.
        if not isinstance(data, dict):
            raise ValueError(f"not a study document (a JSON {_json_type(data)})")
        run_ids = data.get("run_ids")
        if not isinstance(run_ids, list):
            raise ValueError("not a study document (no list of run_ids)")
        for index, run_id in enumerate(run_ids):
            if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
                raise ValueError(f"run_ids[{index}] is {printable(run_id)}, not a run id")
        return data

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)


class RoundDocument(Document):
    """`studies/{study_id}/rounds/{index}.json`: one dispatch round of a study planned in rounds
    (a staged diagnosis). Written before its runs are dispatched, so a driver that died is
    resumed from the store: its rounds are replayed, then the next one is planned."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    index: int = Field(ge=0)
    kind: str
    """What the round is for (for a staged diagnosis: baseline, search, confirm, repair)."""
    reason: str
    """Why it was planned, in a sentence the report shows."""
    variants: list[Variant]
    runs: dict[str, RunSpec]
    planned_at: str = Field(default_factory=utcnow)


class FixRecord(BaseModel):
    """A change that repairs the baseline, as a staged diagnosis decided it."""

    variant: str
    overrides: dict[str, Any]
    gain: float
    """Test accuracy gained (a fraction) where it was decided."""
    decided_by: str
    """`screening` (the study's comparisons) or `confirmation` (fresh seeds)."""
    p_value: float | None


class RepairDocument(Document):
    """`studies/{study_id}/diagnosis.json`: what a staged diagnosis repaired. Written before
    the final report, which shows it; `changes` is empty when nothing to fix was found."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    changes: dict[str, Any]
    """Dotted paths and values of the repaired config, against the baseline."""
    fixes: list[FixRecord]
    dropped: list[str] = Field(default_factory=list)
    """Fixes left out because a larger one sets the same path."""
    refuted: list[str] = Field(default_factory=list)
    """Variants promising on screening that their confirmation did not bear out."""
    gain: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    """The repaired config's measured comparison with the baseline (None when not measured)."""
    file: str | None = None
    """The repaired spec's file name beside the report."""


class RunDocument(BaseModel):
    """`runs/{run_id}/run.json`: the run's spec beside its id, for people and the reporter."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    schema_version: int
    config: dict[str, Any]
    dataset_fingerprint: str
    seed: int

    @classmethod
    def of(cls, run: RunSpec) -> RunDocument:
        return cls.model_validate({"run_id": run.run_id, **run.model_dump(mode="json")})

    def spec(self) -> RunSpec:
        """The run's spec, validated; its hash must be the stored id (else the document
        describes another run)."""
        spec = RunSpec.model_validate(self.model_dump(mode="json", exclude={"run_id"}))
        if spec.run_id != self.run_id:
            raise ValueError(f"run.json of {self.run_id} describes run {spec.run_id}")
        return spec


class TrainMessage(BaseModel):
    """The keyword arguments of a `train_run` queue message (JSON only). The worker validates
    every field before acting (workers/message.py); the client builds it from a `RunSpec`."""

    model_config = ConfigDict(extra="forbid")

    run: dict[str, Any]
    study_id: str
    store: str

    @classmethod
    def of(cls, run: RunSpec, study_id: str, store_url: str) -> TrainMessage:
        return cls(run=run.model_dump(mode="json"), study_id=study_id, store=store_url)


def _json_type(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

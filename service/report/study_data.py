"""What the reporter reads: a study's runs and variants, the facts of its data, its stages and
repair, gathered from the store (`service.report.gather`). Everything the report says is computed
from a `StudyData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.holdout import HeldOutPredictions
from service.lifecycle.documents import RepairDocument, RoundDocument, RunMetrics, RunStatus


@dataclass
class RunRecord:
    run_id: str
    seed: int
    config: dict[str, Any]
    """The run's resolved TrainConfig as JSON (run.json's `config`)."""
    state: str
    """queued, running, succeeded, failed, diverged, cancelled."""
    metrics: RunMetrics | None = None
    status: RunStatus | None = None


@dataclass
class VariantRecord:
    name: str
    factor: str | None
    overrides: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)


@dataclass
class DatasetFacts:
    """What the data itself shows, for the data-problem findings."""

    class_names: list[str]
    train_class_counts: list[int]
    train_size: int
    test_size: int
    raw_min: float
    raw_max: float
    """Range of the training inputs before scaling."""
    scale: str
    """The dataset's `scale` option."""
    train_test_duplicates: int
    """Test samples identical to some training sample."""
    validation_size: int | None = None
    """Samples in the validation split (None when unknown)."""


@dataclass
class StudyData:
    study_id: str
    spec: dict[str, Any]
    variants: list[VariantRecord]
    """The first variant is the baseline."""
    dataset: DatasetFacts | None = None
    stages: list[RoundDocument] = field(default_factory=list)
    """The rounds of a study planned in rounds (a staged diagnosis), in order."""
    repair: RepairDocument | None = None
    out_of_fold: list[VariantRecord] = field(default_factory=list)
    """Variants of out-of-fold runs (`training.holdout`): kept out of `variants`, so no
    comparison sees them; the label-issue list reads them."""
    held_out: dict[str, HeldOutPredictions] = field(default_factory=dict)
    """run_id -> the held-out predictions of each succeeded out-of-fold run."""

"""What the reporter reads (a study's runs) and what it writes (`summary.json`, schema below).

`StudyData` is gathered from the store; `Summary` is the documented, versioned content of
`studies/{study_id}/report/summary.json`, from which report.md, index.html and the plots are
rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from service.records import RunMetrics, RunStatus

SUMMARY_SCHEMA_VERSION = 1


# Input


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


@dataclass
class StudyData:
    study_id: str
    spec: dict[str, Any]
    variants: list[VariantRecord]
    """The first variant is the baseline."""
    dataset: DatasetFacts | None = None


# Output: summary.json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricStats(_Model):
    """A metric across the seeds of a variant; the interval is a 95% t-interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


class Comparison(_Model):
    """A variant's test accuracy against the baseline's (Welch's t-test)."""

    delta: float
    """mean(variant) - mean(baseline)."""
    ci_low: float | None
    ci_high: float | None
    """95% Welch interval of the difference; None exactly when p_value is None."""
    p_value: float | None
    """Two-sided Welch t-test; None when a side has fewer than 2 seeds or no variance at all."""
    effect_size: float | None
    """Hedges' g (bias-corrected standardized mean difference)."""
    p_adjusted: float | None = None
    """p adjusted with Holm's method over all of the study's comparisons with the baseline, so
    that a study of many variants does not state chance differences as findings."""
    significant: bool
    """p_adjusted < alpha (0.05)."""


class Curves(_Model):
    """Per-epoch means and standard deviations across the variant's succeeded seeds."""

    epochs: list[int]
    loss_mean: list[float | None]
    loss_std: list[float | None]
    accuracy_mean: list[float | None]
    accuracy_std: list[float | None]
    val_loss_mean: list[float | None]
    val_loss_std: list[float | None]
    val_accuracy_mean: list[float | None]
    val_accuracy_std: list[float | None]
    learning_rate: list[float | None]


class VariantStats(_Model):
    name: str
    factor: str | None
    overrides: dict[str, Any]
    run_ids: list[str]
    seeds: int
    succeeded: int
    diverged: int
    failed: int
    """Runs not succeeded and not diverged (failed, cancelled, or still queued/running)."""
    test_accuracy: MetricStats
    test_loss: MetricStats
    val_accuracy: MetricStats
    """Final-epoch validation accuracy."""
    val_loss: MetricStats
    train_accuracy: MetricStats
    """Final-epoch training accuracy."""
    train_val_gap: MetricStats
    """Final train accuracy minus final validation accuracy."""
    best_epoch: MetricStats
    """Epoch of the best validation accuracy."""
    vs_baseline: Comparison | None
    curves: Curves


class Finding(_Model):
    rule: Literal[
        "learning_rate_too_high",
        "learning_rate_too_low",
        "overfitting",
        "underfitting",
        "harmful_augmentation",
        "factor_effect",
        "class_imbalance",
        "few_samples",
        "unscaled_input",
        "train_test_leak",
    ]
    title: str
    """One line, e.g. "Horizontal flips hurt: -1.6 points of test accuracy"."""
    kind: Literal["hurts", "helps", "data", "training"]
    statement: str
    """The finding with its numbers, in one or two sentences."""
    evidence: dict[str, Any]
    """The numbers behind the statement (deltas, intervals, p-values, gaps, counts)."""
    variants: list[str]
    run_ids: list[str]
    magnitude: float
    """For ranking: absolute effect on test accuracy (or a rule-specific severity)."""


class Inconclusive(_Model):
    """A comparison the seeds cannot settle, and how many seeds would."""

    variant: str
    delta: float
    p_value: float | None
    seeds_needed: int | None
    """Seeds per variant for 80% power at alpha 0.05, given the observed effect and spread."""
    statement: str


class Summary(_Model):
    schema_version: int = SUMMARY_SCHEMA_VERSION
    study_id: str
    name: str
    generated_at: str
    partial: bool
    """True when some runs failed, were cancelled, or have not finished."""
    counts: dict[str, int]
    """Runs per state."""
    baseline: str
    metric: str = "test_accuracy"
    alpha: float = 0.05
    variants: list[VariantStats]
    findings: list[Finding]
    """Ranked: most important first."""
    inconclusive: list[Inconclusive]
    notes: list[str]
    """Caveats, e.g. which runs failed."""

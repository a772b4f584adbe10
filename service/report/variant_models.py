"""summary.json's numbers for each variant: a metric across seeds, the comparison with the
baseline, the per-epoch curves; and `SummaryModel`, the base of every summary.json model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

CONFIRM_SUFFIX = " (confirm)"
"""A staged diagnosis's confirmation variants are named apart (`lr x0.1 (confirm)`): their fresh
seeds stay in variants of their own, compared with the baseline retrained on the same seeds."""
CONFIRMED_BASELINE = "baseline" + CONFIRM_SUFFIX


class SummaryModel(BaseModel):
    """The base of every summary.json model: an unknown field is an error."""

    model_config = ConfigDict(extra="forbid")


class MetricStats(SummaryModel):
    """A metric across the seeds of a variant; the interval is a 95% t-interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


JudgedMetric = Literal["test_accuracy", "balanced_accuracy"]


class Comparison(SummaryModel):
    """A variant's test accuracy (or balanced accuracy, see `metric`) against the baseline's
    (Welch's t-test)."""

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
    """p adjusted with Benjamini-Hochberg over all of the study's comparisons with the baseline
    (a screening family), so that a study of many variants does not state chance differences as
    findings. Significance is judged on it."""
    significant: bool
    """p_adjusted < alpha (0.05)."""
    binomial_floor: bool = False
    """True when a side's spread across seeds was below the binomial noise of its test
    accuracy, so the floor p(1-p)/n_test was used instead."""
    metric: JudgedMetric = "test_accuracy"
    """What was compared: test accuracy, or balanced accuracy (mean per-class recall) for a
    variant that only reweights or resamples the classes (`balance.judged_metric`)."""


class Curves(SummaryModel):
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


class VariantStats(SummaryModel):
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
    balanced_accuracy: MetricStats | None = None
    """Test balanced accuracy: the mean of the per-class recalls (from each run's confusion
    matrix), with the binomial floor of the smallest class's noise."""
    curves: Curves

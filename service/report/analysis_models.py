"""Parts of summary.json that only some studies have: a grid's factorial analysis, a staged
diagnosis's stages, the training samples most likely mislabelled, and the learning curve.
"""

from __future__ import annotations

from typing import Any, Literal

from service.report.variant_models import Comparison, MetricStats, SummaryModel


class LevelMean(SummaryModel):
    """A factor level's estimated marginal mean: the model's cell means at that level,
    averaged over every level of the other factors."""

    level: str
    mean: float | None
    seeds: int
    """Succeeded runs at this level, all cells together."""


class FactorEffect(SummaryModel):
    """One factor of a grid: does it matter (Type II ANOVA), how much of the variance across
    runs it explains, and its levels' marginal means."""

    factor: str
    paths: list[str]
    df: int
    f_value: float | None
    p_value: float | None
    eta_squared: float | None
    """Its Type II sum of squares over the total sum of squares across runs."""
    levels: list[LevelMean]
    baseline_level: str | None
    """The level equal to the baseline's own setting; None when the grid lacks it."""
    note: str = ""


class MainEffect(SummaryModel):
    """A level of a factor against the baseline's level, averaged over the other factors."""

    factor: str
    level: str
    reference: str
    """The baseline's level of this factor."""
    overrides: dict[str, Any]
    delta: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    """Benjamini-Hochberg over the grid's main-effect contrasts."""
    significant: bool


class Interaction(SummaryModel):
    """A two-way interaction: does one factor's effect depend on the other's level."""

    factors: list[str]
    df: int
    f_value: float | None
    p_value: float | None
    p_adjusted: float | None
    """Benjamini-Hochberg over the grid's interactions."""
    eta_squared: float | None
    significant: bool


class GridCell(SummaryModel):
    levels: list[str]
    """One level per factor, in the factors' order."""
    variant: str
    mean: float | None
    seeds: int


class Factorial(SummaryModel):
    """A grid study read as a factorial design (seeds are the replicates)."""

    factors: list[FactorEffect]
    main_effects: list[MainEffect]
    interactions: list[Interaction]
    cells: list[GridCell]
    model: Literal["two-way", "additive", "none"]
    """Main effects plus every two-way interaction, main effects only (when cells are
    missing or unreplicated), or nothing estimable."""
    residual_df: int
    notes: list[str]


class StageRecord(SummaryModel):
    """One stage of a staged diagnosis, as the report shows it."""

    index: int
    kind: str
    reason: str
    variants: list[str]
    runs: int


class LabelIssue(SummaryModel):
    """A training sample whose given label is likely wrong."""

    sample: int
    """Its index in the source's training data (the npz's x_train, digits, an image folder's
    sorted files)."""
    name: str
    """Its identity in the user's dataset: `x_train[17]`, `digits[17]`, `cats/017.png`."""
    given: str
    """The class its label gives."""
    predicted: str
    """The class the out-of-fold model predicts."""
    given_confidence: float
    """The out-of-fold probability of the given label (self-confidence; lowest first)."""
    predicted_confidence: float


class LabelIssues(SummaryModel):
    """The training samples most likely mislabelled (confident learning on out-of-fold runs)."""

    method: str
    folds: int
    runs: list[str]
    """The out-of-fold runs merged (run ids)."""
    samples: int
    """Training samples scored (each by a model that never saw it)."""
    flagged: int
    """Samples cleanlab flags as likely mislabelled."""
    top: list[LabelIssue]
    """The most likely mislabelled first (at most 20)."""
    note: str = ""


class CurvePoint(SummaryModel):
    """One share of the training split on the learning curve, across its seeds."""

    variant: str
    fraction: float
    """`training.train_fraction` of its runs (1.0: the whole training split)."""
    samples: int | None
    """Training samples at that share (None when the dataset could not be read)."""
    test_accuracy: MetricStats
    val_accuracy: MetricStats
    train_accuracy: MetricStats
    """Final-epoch training accuracy."""
    test_values: list[float]
    val_values: list[float]
    train_values: list[float]
    """Each succeeded seed's value, for the plot."""


class LearningCurve(SummaryModel):
    """Accuracy against the share of the training split (variants that change only
    `training.train_fraction`): would more data help? Never a fix or a cause."""

    points: list[CurvePoint]
    """Smallest share first."""
    step: Comparison | None
    """The largest share against the one below it (Welch, 95% interval, not adjusted)."""
    reading: Literal["rising", "flat", "unclear"]
    statement: str
    """The reading in one line, with the step and its interval."""

"""What the reporter reads (a study's runs) and what it writes (`summary.json`, schema below).

`StudyData` is gathered from the store; `Summary` is the documented, versioned content of
`studies/{study_id}/report/summary.json`, from which report.md, index.html and the plots are
rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from service.holdout import HeldOutPredictions
from service.lifecycle import RepairDocument, RoundDocument, RunMetrics, RunStatus

SUMMARY_SCHEMA_VERSION = 4


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


# Output: summary.json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def plain(value: Any) -> Any:
    """Evidence as JSON-ready Python values (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value


Evidence = Annotated[dict[str, Any], BeforeValidator(plain)]


class MetricStats(_Model):
    """A metric across the seeds of a variant; the interval is a 95% t-interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


JudgedMetric = Literal["test_accuracy", "balanced_accuracy"]


class Comparison(_Model):
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
    balanced_accuracy: MetricStats | None = None
    """Test balanced accuracy: the mean of the per-class recalls (from each run's confusion
    matrix), with the binomial floor of the smallest class's noise."""
    curves: Curves


CauseRule = Literal[
    "learned_nothing",
    "learning_rate_too_high",
    "learning_rate_too_low",
    "too_few_epochs",
    "few_updates",
    "underfitting",
    "overfitting",
    "over_regularization",
    "harmful_augmentation",
    "class_imbalance",
    "class_collapse",
    "unscaled_input",
    "label_noise",
    "few_samples",
    "factor_effect",
]
SymptomRule = Literal[
    "learned_nothing",
    "diverged",
    "oscillating_loss",
    "underfitting",
    "overfitting",
    "still_improving",
    "few_updates",
    "class_collapse",
    "class_imbalance",
    "test_above_validation",
    "unscaled_input",
]


class Symptom(_Model):
    """Something the baseline's own runs (or its data) show, with its evidence across seeds."""

    rule: SymptomRule
    title: str
    statement: str
    evidence: Evidence
    stake: float
    """Test accuracy at stake (a fraction), on the scale fixes are ranked on: e.g. the
    minority classes' share of the test set times their recall deficit."""
    refuted_by: list[str] = []
    """Variants that applied this symptom's direct remedy without a gain: the symptom is shown
    but not claimed as a cause."""


class Fix(_Model):
    """A change from the baseline, as the spec fragment that makes it, and what it measured."""

    variant: str | None
    """The variant that measured it; None for a fix suggested but not tested."""
    changes: dict[str, Any]
    """Dotted spec paths and the values to set."""
    spec: str
    """The same change as a YAML fragment to paste into the spec."""
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_adjusted: float | None = None
    metric: JudgedMetric = "test_accuracy"
    """What `delta` measures: test accuracy or balanced accuracy (a class-balance fix)."""
    confirmed: bool = True
    """False for a change measured as promising but not significant after the adjustment: it
    is to be confirmed (it is in the next study, not in the recommendation)."""


class Cause(_Model):
    """A cause of the baseline's low accuracy: a fix that significantly helps, a symptom of the
    baseline itself, or both."""

    rule: CauseRule
    title: str
    statement: str
    basis: Literal["fix", "symptom", "fix and symptom"]
    gain: float
    """The accuracy it recovers (a measured fix's delta) or has at stake (a symptom's), for
    ranking; a fraction."""
    fix: Fix | None
    """The measured fix, when one was tested and helps."""
    try_next: list[Fix]
    """Changes to try that this study did not test (or tested too narrowly)."""
    advice: str
    """What to change, in a sentence, including what lies outside the spec."""
    symptoms: list[str]
    evidence: Evidence
    variants: list[str]
    run_ids: list[str]


class Finding(_Model):
    """A fact that is not a cause: a change that hurts (what the baseline already gets right) or
    a fact of the data."""

    rule: str
    title: str
    kind: Literal["hurts", "data"]
    statement: str
    evidence: Evidence
    variants: list[str]
    run_ids: list[str]
    magnitude: float
    """For ranking within its section: absolute effect on test accuracy or a severity."""


class Inconclusive(_Model):
    """A comparison the seeds did not settle: what its interval rules out, and the seeds that
    would settle it."""

    variant: str
    delta: float
    p_value: float | None
    """The BH-adjusted p that significance was judged on."""
    ci_low: float | None = None
    ci_high: float | None = None
    seeds_needed: int | None
    """Seeds per variant for 80% power at the BH threshold this comparison faces."""
    statement: str


class Statistics(_Model):
    """How significance was judged, and what the study could detect."""

    procedure: str
    alpha: float
    comparisons: int
    seeds: int
    """Seeds of the baseline (succeeded)."""
    detectable_effect: float | None
    """The smallest difference the study detects with 80% power at the strictest BH threshold
    (alpha / comparisons), given the baseline's spread; a fraction."""
    underpowered: bool
    """True when that detectable effect exceeds MATERIAL_EFFECT."""
    statement: str


class NextSteps(_Model):
    recommended: dict[str, Any]
    """Dotted spec paths and values: the significant fixes combined (later ones yield on
    conflicts)."""
    recommended_spec: str
    """The recommended changes as a YAML fragment ('' when nothing to change)."""
    combined_from: list[str]
    """Variants whose changes the recommendation combines."""
    untested: bool
    """True when the combination was not itself trained by this study."""
    next_study: str | None
    """File name of the next study's spec beside the report, when there is one."""
    next_study_reason: str | None
    actions: list[str]
    """What to do, in order."""


class LevelMean(_Model):
    """A factor level's estimated marginal mean: the model's cell means at that level,
    averaged over every level of the other factors."""

    level: str
    mean: float | None
    seeds: int
    """Succeeded runs at this level, all cells together."""


class FactorEffect(_Model):
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


class MainEffect(_Model):
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


class Interaction(_Model):
    """A two-way interaction: does one factor's effect depend on the other's level."""

    factors: list[str]
    df: int
    f_value: float | None
    p_value: float | None
    p_adjusted: float | None
    """Benjamini-Hochberg over the grid's interactions."""
    eta_squared: float | None
    significant: bool


class GridCell(_Model):
    levels: list[str]
    """One level per factor, in the factors' order."""
    variant: str
    mean: float | None
    seeds: int


class Factorial(_Model):
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


class StageRecord(_Model):
    """One stage of a staged diagnosis, as the report shows it."""

    index: int
    kind: str
    reason: str
    variants: list[str]
    runs: int


class LabelIssue(_Model):
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


class LabelIssues(_Model):
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


class CurvePoint(_Model):
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


class LearningCurve(_Model):
    """Accuracy against the share of the training split (variants that change only
    `training.train_fraction`): would more data help? Never a fix or a cause."""

    points: list[CurvePoint]
    """Smallest share first."""
    step: Comparison | None
    """The largest share against the one below it (Welch, 95% interval, not adjusted)."""
    reading: Literal["rising", "flat", "unclear"]
    statement: str
    """The reading in one line, with the step and its interval."""


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
    verdict: str
    """The answer in one sentence: the top cause, or that nothing to fix was found."""
    variants: list[VariantStats]
    causes: list[Cause]
    """What is causing low accuracy, most accuracy at stake first; empty on a healthy
    baseline."""
    symptoms: list[Symptom]
    """Everything the baseline's runs show, claimed or not."""
    strengths: list[Finding]
    """Changes that significantly hurt: what the baseline already gets right."""
    facts: list[Finding]
    """Facts of the data that are not causes (an imbalance the model copes with, a leak)."""
    inconclusive: list[Inconclusive]
    not_comparable: list[str]
    """Variants that change the data or test set: shown, never claimed."""
    statistics: Statistics
    next_steps: NextSteps
    notes: list[str]
    """Caveats, e.g. which runs failed."""
    factorial: Factorial | None = None
    """A grid study's main effects and interactions (None for other strategies)."""
    labels: dict[str, str] = {}
    """Short labels (V1, V2, ...) for variant names too long for plots and tables; the
    report's legend maps them back."""
    stages: list[StageRecord] = []
    """A staged diagnosis's path: each stage, why it was planned, what it trained."""
    repair: RepairDocument | None = None
    """What a staged diagnosis repaired (None for other studies)."""
    label_issues: LabelIssues | None = None
    """The training samples most likely mislabelled, when the study holds every fold of a
    config's out-of-fold runs (a staged diagnosis that searched label noise)."""
    learning_curve: LearningCurve | None = None
    """Accuracy against the share of the training split, when the study trained the
    baseline's config on at least two shares."""

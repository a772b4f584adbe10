"""summary.json's diagnosis: the baseline's symptoms, the causes with their fixes, the other
findings, what the seeds did not settle, how significance was judged, and the next steps.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from service.report.variant_models import JudgedMetric, SummaryModel


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


class Symptom(SummaryModel):
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


class Fix(SummaryModel):
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


class Cause(SummaryModel):
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


class Finding(SummaryModel):
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


class Inconclusive(SummaryModel):
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


class Statistics(SummaryModel):
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


class NextSteps(SummaryModel):
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

"""The documented, versioned content of `studies/{study_id}/report/summary.json` (`Summary`),
from which report.md, index.html and the plots are rendered. Its parts are in
`variant_models.py` (each variant's statistics), `diagnosis_models.py` (causes, symptoms, next
steps) and `analysis_models.py` (factorial, stages, label issues, learning curve).
"""

from __future__ import annotations

from service.lifecycle.documents import RepairDocument
from service.report.analysis_models import Factorial, LabelIssues, LearningCurve, StageRecord
from service.report.diagnosis_models import Cause, Finding, Inconclusive, NextSteps, Statistics, Symptom
from service.report.variant_models import SummaryModel, VariantStats

SUMMARY_SCHEMA_VERSION = 4


class Summary(SummaryModel):
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

"""What the baseline's own runs show: learned nothing, diverged, oscillating, underfitting,
overfitting, still improving, too few updates, a collapsed class, imbalance, test above
validation, unscaled input.

Each symptom is read across the baseline's seeds with its evidence, and carries the test
accuracy it puts at stake, on the same scale as a fix's measured gain, so that the diagnosis
ranks symptoms and fixes together. A symptom is never read from a single lucky seed: each asks
for most seeds, or a one-sided test across seeds.

The readers are in `learning_symptoms.py` (did training move, settle and finish) and
`fit_symptoms.py` (how the trained model fits its training data against held-out data);
`data_symptoms.py` reads the data's.
"""

from __future__ import annotations

from service.report.contrast import StudyContrasts
from service.report.data_symptoms import class_symptoms, unscaled_input
from service.report.diagnosis_models import Finding, Symptom
from service.report.fit_symptoms import overfitting, test_above_validation, underfitting
from service.report.learning_symptoms import (
    diverged,
    few_updates,
    learned_nothing,
    oscillating_loss,
    still_improving,
)
from service.report.rules.thresholds import MIN_GAIN


def read_symptoms(study: StudyContrasts) -> tuple[list[Symptom], list[Finding]]:
    """The baseline's symptoms, and the data facts that are not symptoms (an imbalance the
    model copes with, unscaled input it trains well on)."""
    runs = [run for run in study.baseline_record.runs if run.metrics is not None]
    found: list[Symptom] = []
    nothing = learned_nothing(study, runs)
    found += [s for s in (nothing, diverged(study)) if s]
    if runs:
        trouble = nothing is not None
        for reader in (underfitting, overfitting, still_improving, test_above_validation):
            symptom = reader(study, runs, trouble)
            if symptom:
                found.append(symptom)
        found += [s for s in (oscillating_loss(study, runs, found),) if s]
        found += [s for s in (few_updates(study, found),) if s]
        found += class_symptoms(study, runs, collapse=not trouble)
    facts = []
    unscaled = unscaled_input(study, found)
    if unscaled is not None:
        (found if unscaled.stake >= MIN_GAIN else facts).append(unscaled)
    imbalance = next((s for s in found if s.rule == "class_imbalance"), None)
    if imbalance is not None and imbalance.stake < MIN_GAIN:
        found.remove(imbalance)
        facts.append(imbalance)
    return found, [_as_fact(study, s) for s in facts]


def _as_fact(study: StudyContrasts, symptom: Symptom) -> Finding:
    runs = [run.run_id for run in study.baseline_record.runs]
    return Finding(
        rule=symptom.rule,
        title=symptom.title,
        kind="data",
        statement=symptom.statement,
        evidence=symptom.evidence,
        variants=[study.baseline.name],
        run_ids=runs,
        magnitude=symptom.stake,
    )

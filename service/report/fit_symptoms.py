"""Symptoms of how the baseline's trained model fits: underfitting (its own training data
poorly), overfitting (a train-held-out gap beyond noise), and test accuracy above validation
accuracy (noisy training labels or shifted splits). Each is read across the baseline's seeds,
with the test accuracy it puts at stake.
"""

from __future__ import annotations

import numpy as np

from service.report.contrast import StudyContrasts
from service.report.diagnosis_models import Symptom
from service.report.readings import final_value, one_sided_p
from service.report.rules.thresholds import (
    GAP_THRESHOLD,
    LOW_TRAIN_ACCURACY,
    SMALL_VALIDATION,
    TEST_ABOVE_VALIDATION,
)
from service.report.stats import binomial_var, finite
from service.report.study_data import RunRecord
from service.report.wording import p_text, pct


def underfitting(study: StudyContrasts, runs: list[RunRecord], trouble: bool) -> Symptom | None:
    train = study.baseline.train_accuracy.mean
    if trouble or train is None or train >= LOW_TRAIN_ACCURACY:
        return None
    test = study.baseline.test_accuracy.mean or 0.0
    return Symptom(
        rule="underfitting",
        title=f"Underfitting: {pct(train)} training accuracy",
        statement=(
            f"The baseline fits its own training data poorly: {pct(train)} final training "
            f"accuracy across {len(runs)} seeds (below {pct(LOW_TRAIN_ACCURACY)}), so test "
            f"accuracy ({pct(test)}) is limited by what the model learns, not by how it "
            "generalizes."
        ),
        evidence={"train_accuracy": train, "threshold": LOW_TRAIN_ACCURACY, "test_accuracy": test},
        stake=max(0.0, min(1.0 - train, 1.0 - test)),
    )


def overfitting(study: StudyContrasts, runs: list[RunRecord], trouble: bool) -> Symptom | None:
    """Training accuracy well above held-out accuracy, significantly across seeds. The gap is
    measured on the validation split unless that split is too small, then on the test split."""
    if trouble:
        return None
    facts = study.data.dataset
    val_size = facts.validation_size if facts else None
    use_val = all(final_value(run, "val_accuracy") is not None for run in runs) and (
        val_size is None or val_size >= SMALL_VALIDATION
    )
    held, samples = [], val_size if use_val else runs[0].metrics.test.samples
    gaps = []
    for run in runs:
        train = final_value(run, "accuracy")
        other = final_value(run, "val_accuracy") if use_val else run.metrics.test.accuracy
        if train is not None and other is not None:
            gaps.append(train - other)
            held.append(other)
    gaps_ = finite(gaps)
    if len(gaps_) == 0 or gaps_.mean() <= GAP_THRESHOLD:
        return None
    floor = binomial_var(float(np.mean(held)), samples)
    p_value = one_sided_p(gaps_, floor, GAP_THRESHOLD)
    if p_value is None or p_value >= study.alpha:
        return None
    gap = float(gaps_.mean())
    against = "validation" if use_val else "test"
    why = (
        ""
        if use_val
        else f" (measured against the test split: the validation split has "
        f"{val_size if val_size is not None else 'no'} samples, too few to measure it)"
    )
    return Symptom(
        rule="overfitting",
        title=f"Overfitting: a {gap * 100:.1f}-point train-{against} gap",
        statement=(
            f"The baseline's final training accuracy exceeds its {against} accuracy by "
            f"{gap * 100:.1f} points across {len(gaps_)} seeds{why} ({p_text(p_value)} for a "
            f"gap above {GAP_THRESHOLD * 100:.0f} points): it memorizes its training set."
        ),
        evidence={
            "gap": gap,
            "measured_against": against,
            "validation_size": val_size,
            "gap_threshold": GAP_THRESHOLD,
            "gap_p_value": p_value,
        },
        stake=(gap - GAP_THRESHOLD) / 2,
    )


def test_above_validation(
    study: StudyContrasts, runs: list[RunRecord], trouble: bool
) -> Symptom | None:
    """Test accuracy above validation accuracy beyond noise: impossible on a clean random
    split, so the training labels (the validation split is drawn from them) are noisy, or the
    splits come from different distributions."""
    facts = study.data.dataset
    diffs, vals = [], []
    for run in runs:
        val = final_value(run, "val_accuracy")
        if val is not None:
            diffs.append(run.metrics.test.accuracy - val)
            vals.append(val)
    diffs_ = finite(diffs)
    if trouble or len(diffs_) < 2 or diffs_.mean() <= TEST_ABOVE_VALIDATION:
        return None
    val_size = facts.validation_size if facts else None
    floor = binomial_var(float(np.mean(vals)), val_size) + binomial_var(
        float(study.baseline.test_accuracy.mean or 0), runs[0].metrics.test.samples
    )
    p_value = one_sided_p(diffs_, floor, 0.0)
    if p_value is None or p_value >= study.alpha:
        return None
    diff = float(diffs_.mean())
    return Symptom(
        rule="test_above_validation",
        title=f"Test accuracy {diff * 100:.1f} points above validation accuracy",
        statement=(
            f"Test accuracy exceeds validation accuracy by {diff * 100:.1f} points across "
            f"{len(diffs_)} seeds ({p_text(p_value)}): on a clean random split they agree, so "
            "the training labels (from which the validation split is drawn) are likely noisy, "
            "or the test split comes from a different distribution."
        ),
        evidence={"test_minus_validation": diff, "p_value": p_value, "validation_size": val_size},
        stake=diff,
    )

"""Symptoms of the data as the baseline's runs feel it: classes the model does not learn,
an imbalance that costs the minority classes recall, and inputs fed unscaled."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.report.contrast import StudyContrasts
from service.report.diagnosis_models import Symptom
from service.report.rules.thresholds import (
    COLLAPSE_RECALL,
    GROSS_UNSCALED_MAX,
    IMBALANCE_RATIO,
    UNSCALED_MAX,
)
from service.report.study_data import DatasetFacts, RunRecord
from service.report.wording import pct

# Classes


def recalls(runs: list[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(mean recall per class across seeds, test share per class) from the confusion matrices."""
    matrices = [np.asarray(run.metrics.test.confusion_matrix, dtype=float) for run in runs]
    per_seed = []
    for m in matrices:
        totals = m.sum(axis=1)
        per_seed.append(np.divide(np.diag(m), totals, out=np.full(len(m), np.nan), where=totals > 0))
    totals = matrices[0].sum(axis=1)
    return np.nanmean(np.asarray(per_seed), axis=0), totals / max(totals.sum(), 1.0)


def class_symptoms(
    study: StudyContrasts, runs: list[RunRecord], collapse: bool = True
) -> list[Symptom]:
    """Classes the model rarely or never predicts correctly and, when the training data is
    imbalanced, the accuracy the minority classes lose."""
    recall, share = recalls(runs)
    names = runs[0].metrics.class_names
    found: list[Symptom] = []
    facts = study.data.dataset
    minority: list[int] = []
    if facts is not None and len(facts.train_class_counts) == len(recall):
        counts = np.asarray(facts.train_class_counts, dtype=float)
        minority = [k for k in range(len(counts)) if counts[k] * IMBALANCE_RATIO <= counts.max()]
    collapsed = []
    for k in range(len(recall)):
        others = np.delete(recall, k)
        reference = float(np.nanmean(others)) if len(others) else 0.0
        if share[k] > 0 and np.isfinite(recall[k]) and recall[k] < COLLAPSE_RECALL * reference:
            collapsed.append((k, reference))
    if minority:
        majority = [k for k in range(len(recall)) if k not in minority]
        reference = float(np.nanmean(recall[majority])) if majority else 1.0
        deficit = [(k, max(0.0, reference - float(recall[k]))) for k in minority if share[k] > 0]
        stake = float(sum(share[k] * d for k, d in deficit))
        counts = facts.train_class_counts
        ratio = max(counts) / min(counts) if min(counts) else math.inf
        worst = min(minority, key=lambda k: recall[k] if np.isfinite(recall[k]) else 1.0)
        found.append(
            Symptom(
                rule="class_imbalance",
                title=f"Class imbalance: {ratio:.0f}x, minority classes at "
                f"{pct(float(np.nanmean(recall[minority])))} recall",
                statement=(
                    f"The training classes are imbalanced ({max(counts)} samples in the largest, "
                    f"{min(counts)} in the smallest: {ratio:.1f}x). The minority classes "
                    f"({', '.join(repr(names[k]) for k in minority[:5])}"
                    f"{' ...' if len(minority) > 5 else ''}) reach "
                    f"{pct(float(np.nanmean(recall[minority])))} test recall against "
                    f"{pct(reference)} for the others; class {names[worst]!r} only "
                    f"{pct(float(recall[worst]))}.{_balanced_text(study)}"
                ),
                evidence={
                    "ratio": ratio if math.isfinite(ratio) else None,
                    "train_class_counts": counts,
                    "minority_classes": [names[k] for k in minority],
                    "minority_recall": float(np.nanmean(recall[minority])),
                    "majority_recall": reference,
                    "per_class_recall": {names[k]: _num(recall[k]) for k in range(len(recall))},
                    "balanced_accuracy": _balanced(study),
                },
                stake=stake,
            )
        )
    rest = [(k, ref) for k, ref in collapsed if k not in minority and collapse]
    if rest:
        stake = float(sum(share[k] * (ref - recall[k]) for k, ref in rest))
        listed = ", ".join(f"{names[k]!r} ({pct(float(recall[k]))})" for k, _ in rest[:5])
        found.append(
            Symptom(
                rule="class_collapse",
                title=f"Class{'es' if len(rest) > 1 else ''} rarely predicted: {listed}",
                statement=(
                    f"The model rarely gets {listed} right (test recall, mean of "
                    f"{len(runs)} seeds), against {pct(float(np.nanmean(recall)))} on average: "
                    "those classes are confused with others or never predicted."
                    + _balanced_text(study)
                ),
                evidence={
                    "collapsed_classes": [names[k] for k, _ in rest],
                    "per_class_recall": {names[k]: _num(recall[k]) for k in range(len(recall))},
                    "balanced_accuracy": _balanced(study),
                },
                stake=stake,
            )
        )
    return found


def _balanced(study: StudyContrasts) -> float | None:
    stats = study.baseline.balanced_accuracy
    return stats.mean if stats is not None else None


def _balanced_text(study: StudyContrasts) -> str:
    """The baseline's balanced accuracy, the measure class-weighting and resampling fixes are
    judged on (service/report/balance.py)."""
    balanced = _balanced(study)
    if balanced is None:
        return ""
    return (
        f" Balanced accuracy (mean per-class recall) is {pct(balanced)} against "
        f"{pct(study.baseline.test_accuracy.mean)} plain test accuracy; class weighting and "
        "resampling are judged on it."
    )


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# Inputs


def unscaled_input(study: StudyContrasts, found: list[Symptom]) -> Symptom | None:
    """Inputs fed unscaled (or scaled twice); at stake only when the baseline trains badly."""
    facts: DatasetFacts | None = study.data.dataset
    if facts is None:
        return None
    trouble = [
        s for s in found if s.rule in ("learned_nothing", "diverged", "underfitting", "oscillating_loss")
    ]
    train = study.baseline.train_accuracy.mean
    stake = 0.0
    unfit = 1.0 - train if train is not None else 0.0
    if trouble:  # what training unscaled inputs costs: at least the training set it cannot fit
        stake = max(max(s.stake for s in trouble), unfit)
    elif facts.scale == "none" and facts.raw_max > GROSS_UNSCALED_MAX:
        stake = unfit  # inputs in the hundreds or thousands: whatever the model cannot fit
    evidence: dict[str, Any] = {
        "raw_min": facts.raw_min,
        "raw_max": facts.raw_max,
        "scale": facts.scale,
    }
    if facts.scale == "none" and facts.raw_max > UNSCALED_MAX:
        statement = (
            f"Inputs reach the model unscaled: values run from {facts.raw_min:g} to "
            f"{facts.raw_max:g} with dataset.scale 'none'"
            + (
                f", and the baseline trains badly ({trouble[0].title.lower()})."
                if trouble
                else f"; the baseline fits {pct(train)} of its training set."
                if stake
                else "; the baseline trains well regardless."
            )
        )
        title = f"Unscaled input: values up to {facts.raw_max:g}"
    elif facts.scale == "unit" and 0 < facts.raw_max <= 1.0:
        statement = (
            f"Inputs are scaled twice: they already lie in {facts.raw_min:g}..{facts.raw_max:g} "
            "and dataset.scale 'unit' divides them by 255 again, leaving almost no signal."
        )
        title = "Input divided by 255 twice"
    else:
        return None
    return Symptom(rule="unscaled_input", title=title, statement=statement, evidence=evidence, stake=stake)

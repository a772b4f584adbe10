"""Regularization and capacity: overfitting (a train-validation gap that regularization
shrinks) and underfitting (low training accuracy; a bigger model better)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from service.report.contrast import (
    Contrast,
    Study,
    effect_text,
    make_finding,
    open_contrasts,
    strongest,
)
from service.report.models import Finding, VariantRecord
from service.report.rules.thresholds import (
    GAP_THRESHOLD,
    LOW_TRAIN_ACCURACY,
    REGULARIZERS,
    REMOVAL_WEIGHT,
)
from service.report.stats import finite
from service.report.wording import p_text, pct, points


def _regularization(c: Contrast) -> int | None:
    """+1 adds regularization (more dropout, L2, augmentation), -1 removes it, else None."""
    return c.direction() if c.only(*REGULARIZERS) else None


def _gaps(record: VariantRecord) -> np.ndarray:
    gaps = []
    for run in record.runs:
        if run.metrics and run.metrics.history:
            last = run.metrics.history[-1]
            if last.accuracy is not None and last.val_accuracy is not None:
                gaps.append(last.accuracy - last.val_accuracy)
    return finite(gaps)


def overfitting(study: Study, claimed: set[str]) -> list[Finding]:
    gap = study.baseline.train_val_gap.mean
    if gap is None:
        return []
    gap_of = {c.name: c.stats.train_val_gap.mean for c in study.contrasts}
    open_ = open_contrasts(study, claimed)
    helping = [
        c
        for c in open_
        if gap > GAP_THRESHOLD
        and c.better
        and _regularization(c) == 1
        and gap_of[c.name] is not None
        and gap_of[c.name] < gap
    ]
    removing = [
        c
        for c in open_
        if c.worse
        and _regularization(c) == -1
        and gap_of[c.name] is not None
        and gap_of[c.name] > gap
    ]
    gaps = _gaps(study.baseline_record)
    gap_p = None
    if len(gaps) >= 2 and gaps.std() > 0:
        gap_p = float(sps.ttest_1samp(gaps, GAP_THRESHOLD, alternative="greater").pvalue)
    wide = gap > GAP_THRESHOLD and gap_p is not None and gap_p < study.alpha
    if not (helping or removing or wide):
        return []
    evidence: dict[str, Any] = {
        "baseline_gap": gap,
        "gap_threshold": GAP_THRESHOLD,
        "gap_p_value": gap_p,
    }
    gap_text = (
        f"The baseline's final training accuracy exceeds its validation accuracy by "
        f"{gap * 100:.1f} points ({p_text(gap_p)} for a gap above {GAP_THRESHOLD * 100:.0f} points)."
    )
    if helping:
        best, effect = strongest(study, helping)
        evidence.update(effect, variant_gap=gap_of[best.name])
        statement = (
            f"{gap_text} {effect_text(best)} and shrinks the gap to "
            f"{gap_of[best.name] * 100:.1f} points."
        )
        title, kind, magnitude = (
            f"Overfitting: {best.name} gains {points(best.delta)}",
            "helps",
            best.delta,
        )
        supporters = helping + removing
    elif removing:
        best, effect = strongest(study, removing, key=lambda c: -c.delta)
        evidence.update(effect, variant_gap=gap_of[best.name])
        statement = (
            f"The model overfits without its regularization: {effect_text(best)} and widens the "
            f"train-validation gap from {gap * 100:.1f} to {gap_of[best.name] * 100:.1f} points."
        )
        title, kind = (
            f"Overfitting held off by regularization: {best.name} loses {abs(best.delta) * 100:.1f} points",
            "hurts",
        )
        magnitude, supporters = REMOVAL_WEIGHT * abs(best.delta), removing
    else:
        statement = (
            gap_text + " No variant in this study shows that regularization raises test accuracy."
        )
        title, kind, supporters = (
            f"Overfitting: a {gap * 100:.1f}-point train-validation gap",
            "training",
            [],
        )
        magnitude = REMOVAL_WEIGHT * (gap - GAP_THRESHOLD)
    return [
        make_finding(study, "overfitting", title, kind, statement, evidence, supporters, magnitude)
    ]


def _capacity(config: dict[str, Any]) -> tuple[int, ...]:
    model = config.get("model", {})
    blocks, dense = model.get("conv_blocks") or [], model.get("dense") or []
    return (
        len(blocks),
        sum(b.get("convs", 1) for b in blocks),
        sum(b.get("filters", 0) for b in blocks),
        len(dense),
        sum(dense),
    )


def _bigger(study: Study, c: Contrast) -> bool:
    """Wider (more filters or dense units) or deeper (more blocks, convs or dense layers)."""
    if not c.only("model.conv_blocks", "model.dense"):
        return False
    old, new = _capacity(study.config), _capacity(c.config)
    return all(n >= o for n, o in zip(new, old, strict=True)) and new != old


def underfitting(study: Study, claimed: set[str]) -> list[Finding]:
    train = study.baseline.train_accuracy.mean
    if train is None or train >= LOW_TRAIN_ACCURACY:
        return []
    bigger = [c for c in open_contrasts(study, claimed) if c.better and _bigger(study, c)]
    if not bigger:
        return []
    best, evidence = strongest(study, bigger)
    evidence.update(
        baseline_train_accuracy=train,
        train_accuracy_threshold=LOW_TRAIN_ACCURACY,
        variant_train_accuracy=best.stats.train_accuracy.mean,
    )
    statement = (
        f"The model underfits: the baseline reaches only {pct(train)} training accuracy, "
        f"and {effect_text(best)}."
    )
    title = f"Too little capacity: {best.name} gains {points(best.delta)}"
    return [
        make_finding(study, "underfitting", title, "helps", statement, evidence, bigger, best.delta)
    ]

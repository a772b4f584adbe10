"""The diagnosis rules: each turns significant evidence about the baseline into one finding.

A rule reads what variants changed (`Contrast.changes`), their comparisons with the baseline,
and the baseline's curves. A variant backs at most one finding: rules run in the order of
`RULES`, each skipping variants an earlier one claimed, and `factor_effect` names whatever
significant effect is left. Thresholds are the module constants below.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from service.report.configs import flatten
from service.report.contrast import (
    Contrast,
    Study,
    effect,
    effect_text,
    make_finding,
    open_contrasts,
    strongest,
)
from service.report.models import Finding, VariantRecord
from service.report.stats import finite
from service.report.wording import describe, p_text, pct, points

GAP_THRESHOLD = 0.05
"""Train minus validation accuracy above which the baseline counts as overfitting."""
LOW_TRAIN_ACCURACY = 0.90
"""Final training accuracy below which the baseline counts as underfitting."""
RISING_WINDOW = 3
RISING_SLOPE = 0.005
"""Validation accuracy still rising: slope over the last RISING_WINDOW epochs, per epoch."""
LOSS_INCREASE = 0.01
OSCILLATING_SHARE = 1 / 3
LATE_LOSS_MARGIN = 1.25
"""Oscillating training loss: more than OSCILLATING_SHARE of the epoch-to-epoch changes rise by
more than LOSS_INCREASE (relative), or the last loss exceeds LATE_LOSS_MARGIN x the minimum."""
DIVERGED_VARIANT_MAGNITUDE = 0.005
"""Rank of "variant X diverged in every seed": it says what not to do, not what is wrong."""
REMOVAL_WEIGHT = 0.5
"""Overfitting shown only by removing regularization (or by the gap alone) ranks at half weight."""

REGULARIZERS = (
    "model.dropout",
    "model.conv_dropout",
    "model.l2",
    "training.label_smoothing",
    "optimizer.weight_decay",
    "augmentation",
)
DECAYING_SCHEDULES = frozenset({"exponential_decay", "cosine", "piecewise", "reduce_on_plateau"})


# Learning rate and training length


def _rate(flat: dict[str, Any]) -> float | None:
    return flat.get("optimizer.learning_rate")


def _lowers_rate(study: Study, c: Contrast) -> bool:
    """A lower learning rate, or the same one with a decaying schedule instead of a constant."""
    if not c.only("optimizer.learning_rate", "schedule"):
        return False
    base, new = study.flat, flatten(c.config)
    old_rate, new_rate = _rate(base), _rate(new)
    if old_rate is None or new_rate is None or new_rate > old_rate:
        return False
    decays = (
        base.get("schedule.name") == "constant" and new.get("schedule.name") in DECAYING_SCHEDULES
    )
    return new_rate < old_rate or decays


def _instability(record: VariantRecord) -> dict[str, Any]:
    """Diverged seeds and seeds whose training loss oscillates."""
    oscillating, shares = 0, []
    for run in record.runs:
        if run.metrics is None:
            continue
        loss = finite(r.loss for r in run.metrics.history)
        if len(loss) < 4:
            continue
        rises = loss[1:] > loss[:-1] * (1 + LOSS_INCREASE)
        share = float(rises.mean())
        shares.append(share)
        if share > OSCILLATING_SHARE or loss[-1] > LATE_LOSS_MARGIN * loss.min():
            oscillating += 1
    diverged = [run for run in record.runs if run.metrics is None and run.state == "diverged"]
    epochs = [
        run.status.diverged_epoch for run in diverged if run.status and run.status.diverged_epoch
    ]
    return {
        "baseline_runs": len(record.runs),
        "baseline_diverged": len(diverged),
        "first_diverged_epoch": min(epochs) if epochs else None,
        "baseline_oscillating": oscillating,
        "loss_increase_share": float(np.mean(shares)) if shares else None,
    }


def _instability_text(facts: dict[str, Any]) -> str:
    parts = []
    if facts["baseline_diverged"]:
        parts.append(
            f"{facts['baseline_diverged']} of {facts['baseline_runs']} baseline seeds diverged"
        )
    if facts["baseline_oscillating"]:
        parts.append(
            f"the training loss oscillates in {facts['baseline_oscillating']} baseline seeds"
        )
    text = "; ".join(parts)
    return f" {text[:1].upper()}{text[1:]}." if parts else ""


def learning_rate_too_high(study: Study, claimed: set[str]) -> list[Finding]:
    base = study.baseline
    facts = _instability(study.baseline_record)
    rate = _rate(study.flat)
    if base.seeds and base.diverged == base.seeds:
        fixes = [
            c
            for c in open_contrasts(study, claimed)
            if _lowers_rate(study, c) and c.stats.succeeded
        ]
        statement = (
            f"Every baseline seed diverged ({base.diverged} of {base.seeds}"
            + (
                f", first at epoch {facts['first_diverged_epoch']}"
                if facts["first_diverged_epoch"]
                else ""
            )
            + f"): the learning rate {rate} is too high for this model."
        )
        if fixes:
            statement += (
                " Training succeeds with "
                + ", ".join(
                    f"{c.name} ({pct(c.stats.test_accuracy.mean)} test accuracy)" for c in fixes
                )
                + "."
            )
        evidence = {**facts, "learning_rate": rate, "trains_with": [c.name for c in fixes]}
        return [
            make_finding(
                study,
                "learning_rate_too_high",
                "Learning rate too high: every baseline seed diverges",
                "training",
                statement,
                evidence,
                fixes,
                1.0,
            )
        ]
    lower = [c for c in open_contrasts(study, claimed) if c.better and _lowers_rate(study, c)]
    if not lower:
        return []
    best, evidence = strongest(study, lower)
    evidence.update(facts, learning_rate=rate)
    lowered = _rate(flatten(best.config)) < rate
    how = "A lower learning rate" if lowered else "Decaying the learning rate"
    statement = f"{how} helps: {effect_text(best)}." + _instability_text(facts)
    late = "" if lowered else " late in training"
    title = f"Learning rate too high{late}: {best.name} gains {points(best.delta)}"
    return [
        make_finding(
            study, "learning_rate_too_high", title, "helps", statement, evidence, lower, best.delta
        )
    ]


def _longer(study: Study, c: Contrast) -> str | None:
    """'epochs' for more epochs, 'rate' for a higher learning rate, else None."""
    base, new = study.flat, flatten(c.config)
    if c.only("training.epochs") and new.get("training.epochs", 0) > base.get("training.epochs", 0):
        return "epochs"
    old_rate, new_rate = _rate(base), _rate(new)
    if c.only("optimizer.learning_rate") and old_rate and new_rate and new_rate > old_rate:
        return "rate"
    return None


def _still_rising(study: Study) -> dict[str, Any] | None:
    """Validation accuracy still climbing at the last epoch, significantly across seeds."""
    slopes, curves = [], []
    for run in study.baseline_record.runs:
        if run.metrics is None or run.metrics.stopped_early:
            continue
        points_ = [
            (r.epoch, r.val_accuracy) for r in run.metrics.history if r.val_accuracy is not None
        ]
        if len(points_) <= RISING_WINDOW:
            continue
        epochs, values = (np.asarray(v, dtype=float) for v in zip(*points_, strict=True))
        slopes.append(float(np.polyfit(epochs[-RISING_WINDOW:], values[-RISING_WINDOW:], 1)[0]))
        curves.append(values)
    if len(slopes) < 2:
        return None
    length = min(len(c) for c in curves)
    mean_curve = np.mean([c[-length:] for c in curves], axis=0)
    p_value = float(sps.ttest_1samp(slopes, 0.0, alternative="greater").pvalue)
    slope = float(np.mean(slopes))
    if not (slope > RISING_SLOPE and math.isfinite(p_value) and p_value < study.alpha):
        return None
    if mean_curve[-1] <= mean_curve[:-1].max():
        return None
    return {
        "val_accuracy_slope": slope,
        "slope_p_value": p_value,
        "slope_seeds": len(slopes),
        "window_epochs": RISING_WINDOW,
        "final_val_accuracy": float(mean_curve[-1]),
    }


def learning_rate_too_low(study: Study, claimed: set[str]) -> list[Finding]:
    faster = [c for c in open_contrasts(study, claimed) if c.better and _longer(study, c)]
    rising = _still_rising(study)
    if not faster and not rising:
        return []
    parts, evidence, magnitude, kind = [], {}, 0.0, "training"
    if rising:
        evidence.update(rising)
        magnitude = rising["val_accuracy_slope"] * RISING_WINDOW
        parts.append(
            f"Baseline validation accuracy is still rising at the last epoch "
            f"({rising['val_accuracy_slope'] * 100:+.1f} points per epoch over the last {RISING_WINDOW} epochs, "
            f"{rising['slope_seeds']} seeds, {p_text(rising['slope_p_value'])}): training ends before it converges."
        )
    kinds = {_longer(study, c) for c in faster}
    if faster:
        best, effect = strongest(study, faster)
        evidence.update(effect)
        magnitude, kind = max(magnitude, best.delta), "helps"
        parts.append(effect_text(best) + ".")
    if kinds == {"rate"}:
        title = "Learning rate too low"
    elif kinds == {"epochs"}:
        title = "Too few epochs"
    elif faster:
        title = "Too few epochs or too low a learning rate"
    else:
        title = "Training stops while validation accuracy still rises"
    if faster:
        title += f": {best.name} gains {points(best.delta)}"
    return [
        make_finding(
            study,
            "learning_rate_too_low",
            title,
            kind,
            " ".join(parts),
            evidence,
            faster,
            magnitude,
        )
    ]


# Regularization and capacity


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


# Augmentation and other factors


def harmful_augmentation(study: Study, claimed: set[str]) -> list[Finding]:
    found = []
    for c in open_contrasts(study, claimed):
        if not (c.significant and c.only("augmentation")):
            continue
        direction = c.direction()
        comparison = c.stats.vs_baseline
        if direction == 1 and c.worse:
            delta, low, high = comparison.delta, comparison.ci_low, comparison.ci_high
        elif direction == -1 and c.better:  # the baseline has the augmentation the variant drops
            delta, low, high = -comparison.delta, -comparison.ci_high, -comparison.ci_low
        else:
            continue
        names = [path.removeprefix("augmentation.") for path in c.changes]
        label = " and ".join(names)
        verb = "lowers" if len(names) == 1 else "lower"
        statement = (
            f"{label} {verb} test accuracy by {abs(delta) * 100:.1f} points "
            f"(95% CI {low * 100:+.1f} to {high * 100:+.1f}), {p_text(comparison.p_value)}; "
            f"compared through {c.name} ({describe(c.changes)})."
        )
        evidence = effect(study, c)
        evidence.update(
            augmentations=names,
            delta_with_augmentation=delta,
            ci_low_with_augmentation=low,
            ci_high_with_augmentation=high,
        )
        title = f"{label.replace('_', ' ').capitalize()} {'hurts' if len(names) == 1 else 'hurt'}: {points(delta)} of test accuracy"
        found.append(
            make_finding(
                study, "harmful_augmentation", title, "hurts", statement, evidence, [c], abs(delta)
            )
        )
    return found


def factor_effect(study: Study, claimed: set[str]) -> list[Finding]:
    """Whatever significant effect no specific rule explained, and variants that always diverge."""
    found = []
    baseline_trains = study.baseline.succeeded > 0
    for c in open_contrasts(study, claimed):
        if c.all_diverged and baseline_trains:
            statement = (
                f"{c.name} ({describe(c.changes)}) diverged in all {c.stats.seeds} seeds, "
                f"while the baseline trains."
            )
            evidence = {
                "variant": c.name,
                "diverged_seeds": c.stats.diverged,
                "seeds": c.stats.seeds,
                "changes": {p: list(v) for p, v in c.changes.items()},
            }
            found.append(
                make_finding(
                    study,
                    "factor_effect",
                    f"{c.name} diverges",
                    "hurts",
                    statement,
                    evidence,
                    [c],
                    DIVERGED_VARIANT_MAGNITUDE,
                )
            )
        elif c.significant:
            verb = "helps" if c.delta > 0 else "hurts"
            title = f"{c.name} {verb}: {points(c.delta)} of test accuracy"
            found.append(
                make_finding(
                    study,
                    "factor_effect",
                    title,
                    verb,
                    effect_text(c) + ".",
                    effect(study, c),
                    [c],
                    abs(c.delta),
                )
            )
    return found


RULES = (
    learning_rate_too_high,
    learning_rate_too_low,
    overfitting,
    underfitting,
    harmful_augmentation,
    factor_effect,
)

"""Learning rate and training length: too high (divergence, oscillating loss; lower rates
better) and too low or too few epochs (validation accuracy still rising; longer training better)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps

from service.report.configs import flatten
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
    DECAYING_SCHEDULES,
    LATE_LOSS_MARGIN,
    LOSS_INCREASE,
    OSCILLATING_SHARE,
    RISING_SLOPE,
    RISING_WINDOW,
)
from service.report.stats import finite
from service.report.wording import p_text, pct, points


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

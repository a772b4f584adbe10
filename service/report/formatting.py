"""How the report writes numbers and names, shared by report.md, index.html and the plots.

Everything here turns a `Summary` into plain strings; escaping for Markdown or HTML is the
caller's job. Accuracies are fractions in the summary and percentages (or points) in the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from service.report.diagnosis_models import Cause
from service.report.models import Summary
from service.report.variant_models import MetricStats, VariantStats

PLOT_CAPTIONS: dict[str, tuple[str, str]] = {
    "test_accuracy.png": (
        "Test accuracy per variant",
        "Mean test accuracy across seeds with its 95% confidence interval; the dashed line is the "
        "baseline's mean. Red: significantly worse than the baseline, green: significantly better. "
        "A class-weighting or resampling variant is compared on balanced accuracy (its label "
        "says so): its colour and difference are that comparison's.",
    ),
    "learning_curves.png": (
        "Learning curves",
        "Training (solid) and validation (dashed) accuracy and loss per epoch: the mean across "
        "seeds, with a band of one standard deviation.",
    ),
    "train_val_gap.png": (
        "Train–validation gap",
        "Final training accuracy minus final validation accuracy, with its 95% confidence "
        "interval; colors as in the test accuracy plot. A large positive gap means overfitting.",
    ),
    "confusion_baseline.png": (
        "Confusion matrix of the baseline",
        "Test predictions summed over the baseline's seeds, each row normalized by its true class.",
    ),
    "confusion_best.png": (
        "Confusion matrix of the best variant",
        "Test predictions summed over the seeds of the variant with the highest mean test "
        "accuracy, each row normalized by its true class.",
    ),
    "data_learning_curve.png": (
        "Learning curve: would more data help?",
        "Accuracy of the baseline's config trained on shares of the training split (number of "
        "training samples in brackets): each seed a point, the mean a line, the test accuracy's "
        "95% confidence interval a band; validation (dashed) and final training (dotted) "
        "accuracy beside it. Its reading compares the largest share with the one below it.",
    ),
    "grid_heatmap.png": (
        "Grid: test accuracy per cell",
        "Mean test accuracy of each cell of the two-factor grid across its seeds (n).",
    ),
    "factor_importance.png": (
        "Grid: what each factor explains",
        "Each factor's and each two-way interaction's share of the variance of test accuracy "
        "across runs (eta squared from the Type II ANOVA); green where the ANOVA's p < 0.05.",
    ),
}


def find_variant(summary: Summary, name: str) -> VariantStats | None:
    return next((v for v in summary.variants if v.name == name), None)


def best_variant(summary: Summary) -> VariantStats | None:
    """The variant with the highest mean test accuracy (the first on a tie), if any has one."""
    scored = [v for v in summary.variants if v.test_accuracy.mean is not None]
    return max(scored, key=lambda v: v.test_accuracy.mean, default=None)


def plot_names(summary: Summary) -> list[str]:
    """The plots a report of `summary` has, in reading order."""
    names = [
        "test_accuracy.png",
        "learning_curves.png",
        "train_val_gap.png",
        "confusion_baseline.png",
    ]
    best = best_variant(summary)
    if best is not None and best.name != summary.baseline:
        names.append("confusion_best.png")
    if summary.learning_curve is not None:
        names.append("data_learning_curve.png")
    factorial = summary.factorial
    if factorial is not None and factorial.cells:
        if len(factorial.factors) == 2:
            names.append("grid_heatmap.png")
        if len(factorial.factors) > 2 and factorial.model != "none":
            names.append("factor_importance.png")
    return names


def partial_message(summary: Summary) -> str:
    """One sentence on why the report is partial, from the run counts."""
    total = sum(summary.counts.values())
    missing = {
        state: n for state, n in sorted(summary.counts.items()) if state != "succeeded" and n
    }
    detail = ", ".join(f"{n} {state}" for state, n in missing.items())
    done = summary.counts.get("succeeded", 0)
    text = f"Partial report: {done} of {total} runs succeeded"
    if detail:
        text += f" ({detail})"
    return text + ". The numbers below use only the runs that succeeded and may change."


# Numbers


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.9312 -> "93.1%"."""
    return f"{100 * value:.{digits}f}%" if _finite(value) else "–"


def points(value: float | None, digits: int = 1) -> str:
    """A difference of fractions in percentage points, signed: -0.016 -> "-1.6 pts"."""
    return f"{100 * value:+.{digits}f} pts".replace("-", "−") if _finite(value) else "–"


def cause_amounts(cause: Cause) -> tuple[str, str]:
    """A cause's two numbers, worded apart: (the fix's measured gain with its interval, the
    accuracy the symptom says is missing); each '' when absent. The second is shown only
    without a measured fix or when it is larger than the fix's gain."""
    fix = cause.fix
    measured = missing = ""
    if fix is not None:
        of = " of balanced accuracy" if fix.metric == "balanced_accuracy" else ""
        measured = f"{_points_word(fix.delta or 0.0)}{of}"
        if _finite(fix.ci_low) and _finite(fix.ci_high):
            measured += f" (95% CI {100 * fix.ci_low:+.1f} to {100 * fix.ci_high:+.1f})".replace("-", "−")
    if fix is None or cause.gain > (fix.delta or 0.0):
        missing = f"up to {_points_word(cause.gain)}"
    return measured, missing


def _points_word(value: float) -> str:
    """A difference of fractions in points, signed and spelled out: 0.841 -> "+84.1 points"."""
    return f"{100 * value:+.1f} points".replace("-", "−")


def interval(low: float | None, high: float | None, signed: bool = False) -> str:
    """A 95% interval of fractions in percent: "[91.2, 95.0]"."""
    if not (_finite(low) and _finite(high)):
        return "–"
    spec = "+.1f" if signed else ".1f"
    return f"[{100 * low:{spec}}, {100 * high:{spec}}]".replace("-", "−")


def _p_judged(comparison) -> str:
    """The p significance is judged on: Welch's, adjusted with Benjamini-Hochberg."""
    return p_value(comparison.p_adjusted if comparison.p_adjusted is not None else comparison.p_value)


def p_value(value: float | None) -> str:
    if not _finite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def number(value: Any, digits: int = 3) -> str:
    """Any evidence value as short text: floats to `digits` significant digits, lists joined."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(number(item, digits) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def as_sentence(text: str) -> str:
    """The text ending as a sentence does (a full stop added unless it has one)."""
    return text if text.endswith((".", "!", "?")) else text + "."


def _signed(value: float | None) -> str:
    return f"{value:.2f}".replace("-", "−") if _finite(value) else "–"


def mean_std(stats: MetricStats) -> str:
    if not _finite(stats.mean):
        return "–"
    if not _finite(stats.std) or stats.n < 2:
        return pct(stats.mean)
    return f"{pct(stats.mean)} ± {100 * stats.std:.1f}"


# The variant table


@dataclass
class VariantRow:
    name: str
    """The name a view shows: the variant's short label when it has one."""
    full_name: str
    factor: str
    seeds: str
    test_accuracy: str
    test_ci: str
    delta: str
    delta_ci: str
    p: str
    g: str
    gap: str
    best_epoch: str
    notes: str
    is_baseline: bool
    tone: str
    """"hurts", "helps" or "" (not significant, or the baseline)."""


VARIANT_COLUMNS = [
    ("name", "Variant"),
    ("seeds", "Seeds"),
    ("test_accuracy", "Test accuracy [95% CI]"),
    ("delta", "Δ vs baseline [95% CI]"),
    ("p", "p (BH)"),
    ("g", "g"),
    ("gap", "Train–val gap"),
    ("best_epoch", "Best epoch"),
    ("notes", "Notes"),
]
INTERVAL_OF = {"test_accuracy": "test_ci", "delta": "delta_ci"}
"""Columns whose value is followed by its interval (kept apart so HTML can set it smaller)."""


def variant_rows(summary: Summary) -> list[VariantRow]:
    return [_variant_row(summary, variant) for variant in summary.variants]


def _variant_row(summary: Summary, variant: VariantStats) -> VariantRow:
    comparison = variant.vs_baseline
    is_baseline = variant.name == summary.baseline
    notes = []
    if is_baseline:
        notes.append("baseline")
    if variant.succeeded == 0:
        notes.append("no result")
    if variant.diverged:
        notes.append(f"{variant.diverged} diverged")
    if variant.failed:
        notes.append(f"{variant.failed} failed or unfinished")
    if comparison is not None and comparison.metric == "balanced_accuracy" and not is_baseline:
        notes.append("Δ on balanced accuracy (mean per-class recall)")
    tone = ""
    if comparison is not None and comparison.significant and not is_baseline:
        tone = "helps" if comparison.delta > 0 else "hurts"
        notes.append("significant")
    epoch = variant.best_epoch
    return VariantRow(
        name=summary.labels.get(variant.name, variant.name),
        full_name=variant.name,
        factor=variant.factor or "",
        seeds=f"{variant.succeeded}/{variant.seeds}",
        test_accuracy=mean_std(variant.test_accuracy),
        test_ci=interval(variant.test_accuracy.ci_low, variant.test_accuracy.ci_high),
        delta=points(comparison.delta) if comparison and not is_baseline else "–",
        delta_ci=interval(comparison.ci_low, comparison.ci_high, signed=True)
        if comparison and not is_baseline
        else "–",
        p=_p_judged(comparison) if comparison and not is_baseline else "–",
        g=_signed(comparison.effect_size) if comparison and not is_baseline else "–",
        gap=points(variant.train_val_gap.mean),
        best_epoch=f"{epoch.mean:.1f}" if _finite(epoch.mean) else "–",
        notes=", ".join(notes),
        is_baseline=is_baseline,
        tone=tone,
    )

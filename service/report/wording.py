"""How numbers read in findings: accuracy deltas in points, intervals, p-values, changes."""

from __future__ import annotations

from typing import Any

from service.report.configs import Change


def points(delta: float) -> str:
    """An accuracy difference (a fraction) in percentage points: 0.016 -> '+1.6 points'."""
    value = delta * 100
    return f"{value:+.2f} points" if 0 < abs(value) < 0.1 else f"{value:+.1f} points"


def metric_words(metric: str, short: bool = False) -> str:
    """How a compared metric is named in a sentence: balanced accuracy is always named."""
    if metric == "balanced_accuracy":
        return "balanced accuracy" if short else "balanced accuracy (mean per-class recall)"
    return "test accuracy"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def p_text(p_value: float | None) -> str:
    if p_value is None:
        return "p n/a"
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.2g}"


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(changed: dict[str, Change], limit: int = 3) -> str:
    """'optimizer.learning_rate 0.001 -> 0.0003'; many paths collapse to their sections. A path
    the baseline lacks that the variant sets to an empty default (a schedule's alpha 0 beside
    its name) is left out when something else changed."""
    meaningful = {p: c for p, c in changed.items() if not (c[0] is None and not c[1])}
    changed = meaningful or changed
    if len(changed) <= limit:
        return ", ".join(
            f"{path} {_value(old)} -> {_value(new)}" for path, (old, new) in changed.items()
        )
    sections = dict.fromkeys(".".join(path.split(".")[:2]) for path in changed)
    return "changed " + ", ".join(sections)


def inline(spec: str) -> str:
    """A YAML fragment on one line, for a sentence."""
    return " ".join(line.strip() for line in spec.splitlines())

"""Short labels for long variant names: V1, V2, ... with a legend back to the names.

A grid of two factors without hand-written labels names its variants
`optimizer.learning_rate=0.01, model.dropout=0.5`: cut to fit a plot's axis or an 80-column
table, two variants read the same. When any name is longer than MAX_NAME every variant but the
baseline gets a short label, and every view (plots, tables, the terminal) shows the label
beside a legend of the full names.
"""

from __future__ import annotations

from service.report.models import Summary

MAX_NAME = 30
"""The longest name shown as it is."""


def short_labels(names: list[str], baseline: str) -> dict[str, str]:
    """{name: label} when some name is too long to show whole; empty otherwise."""
    if all(len(name) <= MAX_NAME for name in names):
        return {}
    labels = {}
    number = 0
    for name in names:
        if name == baseline:
            labels[name] = name if len(name) <= MAX_NAME else "baseline"
        else:
            number += 1
            labels[name] = f"V{number}"
    return labels


def label(summary: Summary, name: str) -> str:
    """The name a view shows for a variant: its short label, or the name itself."""
    return summary.labels.get(name, name)


def legend(summary: Summary) -> list[tuple[str, str]]:
    """(label, full name) for every variant that has a label different from its name."""
    return [(short, name) for name, short in summary.labels.items() if short != name]

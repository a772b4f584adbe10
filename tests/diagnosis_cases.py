"""What the service.report.diagnosis tests share: a planted study (`tests/planted_study.py`)
summarized by the real report, the rules its causes and symptoms name, and the learning-rate
overrides and chance-level baseline that several cases reuse."""

from __future__ import annotations

from service.report.models import Summary
from service.report.summary import summarize_study
from tests.planted_study import clean_facts, make_study


def summarize(variants: dict, **options) -> Summary:
    options.setdefault("dataset", clean_facts())
    return summarize_study(
        make_study(variants, **options), generated_at="2024-05-01T12:00:00+00:00"
    )


def causes(summary: Summary) -> list[str]:
    return [cause.rule for cause in summary.causes]


def symptoms(summary: Summary) -> list[str]:
    return [s.rule for s in summary.symptoms]


LOWER_RATE = {"optimizer.learning_rate": 0.0001}
HIGHER_RATE = {"optimizer.learning_rate": 0.01}
CHANCE = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.0, "gap_sd": 0.0}
"""A baseline at chance on 10 classes: every seed identical, training at chance too."""

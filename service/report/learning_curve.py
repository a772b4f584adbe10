"""The data learning curve: the baseline's config trained on shares of the training split
(`training.train_fraction`), read as "would more data help?".

Its points are the baseline and every variant that changes only `training.train_fraction`: a
staged diagnosis's 25% and 50% shares when the baseline overfits, or a user's own factor. The
reading compares the largest share with the one below it, Welch's test on the seeds' test
accuracies with the test split's binomial floor (`stats.compare`), a 95% interval, not adjusted
(it is a description, never a claim): rising when the interval lies above 0 and the gain is at
least MIN_GAIN, flat when it rules out a gain of MATERIAL_EFFECT, unclear otherwise. A point of
the curve is scored on the baseline's test set but is never a fix or a cause.
"""

from __future__ import annotations

import math

from service.report.analysis_models import CurvePoint, LearningCurve
from service.report.configs import flatten
from service.report.contrast import StudyContrasts
from service.report.diagnosis_models import Cause
from service.report.rules.thresholds import MATERIAL_EFFECT, MIN_GAIN
from service.report.stats import compare, finite, samples_tested, seed_accuracies
from service.report.study_data import DatasetFacts, RunRecord, VariantRecord
from service.report.variant_models import Comparison, VariantStats
from service.report.wording import points

FRACTION = "training.train_fraction"


def learning_curve(study: StudyContrasts | None, alpha: float = 0.05) -> LearningCurve | None:
    """The curve of a study with at least two shares of the training split that have a
    result; None otherwise."""
    if study is None:
        return None
    found = [(study.flat.get(FRACTION) or 1.0, study.baseline_record, study.baseline)]
    found += [
        (flatten(c.config).get(FRACTION) or 1.0, c.record, c.stats)
        for c in study.contrasts
        if c.only(FRACTION)
    ]
    by_share: dict[float, CurvePoint] = {}
    records: dict[float, VariantRecord] = {}
    for fraction, record, stats in found:
        if fraction in by_share or not stats.test_accuracy.n:
            continue  # one point per share, the baseline's first
        by_share[fraction] = _point(fraction, record, stats, study.data.dataset)
        records[fraction] = record
    if len(by_share) < 2:
        return None
    shares = sorted(by_share)
    top, below = shares[-1], shares[-2]
    step = compare(
        by_share[top].test_values,
        by_share[below].test_values,
        alpha,
        samples_tested(records[top]) or samples_tested(records[below]),
    )
    reading, statement = _reading(step, below, top, by_share)
    return LearningCurve(
        points=[by_share[share] for share in shares], step=step, reading=reading, statement=statement
    )


def _point(
    fraction: float, record: VariantRecord, stats: VariantStats, facts: DatasetFacts | None
) -> CurvePoint:
    done = [run for run in record.runs if run.metrics is not None]
    return CurvePoint(
        variant=record.name,
        fraction=fraction,
        samples=training_samples(facts, fraction),
        test_accuracy=stats.test_accuracy,
        val_accuracy=stats.val_accuracy,
        train_accuracy=stats.train_accuracy,
        test_values=seed_accuracies(record),
        val_values=_final(done, "val_accuracy"),
        train_values=_final(done, "accuracy"),
    )


def _final(runs: list[RunRecord], field: str) -> list[float]:
    return finite(getattr(r.metrics.history[-1], field) for r in runs if r.metrics.history).tolist()


def training_samples(facts: DatasetFacts | None, fraction: float) -> int | None:
    """Training samples at `fraction` of the training split, as the pipeline draws them
    (`service.datasets.balance.train_subset`: per class, ceil(fraction x count), at least one)."""
    if facts is None or not facts.train_class_counts:
        return None
    if fraction >= 1.0:
        return sum(facts.train_class_counts)
    return sum(max(1, math.ceil(fraction * c - 1e-9)) for c in facts.train_class_counts if c)


def share(fraction: float) -> str:
    """0.25 -> '25%'; 0.125 -> '12.5%'."""
    return f"{fraction * 100:.3g}%"


def _reading(
    step: Comparison | None, below: float, top: float, by_share: dict[float, CurvePoint]
) -> tuple[str, str]:
    span = f"from {share(below)} to {share(top)} of the training split"
    if step is None:
        return "unclear", f"no result at {share(below)} or {share(top)} of the training split"
    if step.ci_low is None or step.ci_high is None:
        seeds = min(by_share[below].test_accuracy.n, by_share[top].test_accuracy.n)
        return "unclear", (
            f"the seeds cannot tell whether more data would help: {points(step.delta)} {span}, "
            f"from {seeds} seed{'s' if seeds != 1 else ''} per share; an interval needs 2 or more"
        )
    bounds = f"95% CI {step.ci_low * 100:+.1f} to {step.ci_high * 100:+.1f}"
    if step.ci_low > 0 and step.delta >= MIN_GAIN:
        return "rising", f"more data would likely help: {points(step.delta)} {span} ({bounds})"
    if step.ci_high < MATERIAL_EFFECT:
        return "flat", (
            f"the curve is flat {span}: more data alone is unlikely to help "
            f"({points(step.delta)}, {bounds})"
        )
    return "unclear", (
        f"the seeds cannot tell whether more data would help: {points(step.delta)} {span} "
        f"({bounds}); more seeds per share would settle it"
    )


def beside(cause: Cause) -> bool:
    """The curve's reading is shown next to an overfitting cause: more data is its surest fix."""
    return cause.rule == "overfitting" or "overfitting" in cause.symptoms


def sentence(curve: LearningCurve) -> str:
    """The reading as a sentence of its own."""
    return f"Learning curve: {curve.statement}."

"""What the study cannot tell and what it could detect: each comparison the seeds did not
settle, with what its interval rules out and the seeds that would settle it at the BH threshold
it faces; and the study's power against the effect size that matters."""

from __future__ import annotations

from service.report.contrast import Contrast, StudyContrasts
from service.report.diagnosis_models import Inconclusive, Statistics
from service.report.rules import comparable
from service.report.rules.thresholds import MATERIAL_EFFECT, MIN_GAIN
from service.report.stats import (
    detectable_effect,
    per_seed_sd,
    pooled_std,
    samples_for,
    samples_tested,
    seed_accuracies,
    seed_values,
    seeds_needed,
    threshold_to_join,
)
from service.report.wording import describe, metric_words, p_text, points

PRACTICAL_SEEDS = 100
"""Seeds per variant beyond which the report says an effect is too small to chase."""


def inconclusive(study: StudyContrasts, fair: list[Contrast]) -> list[Inconclusive]:
    comparisons = [c.stats.vs_baseline for c in fair if c.stats.vs_baseline is not None]
    level = threshold_to_join(comparisons, study.alpha)
    entries = []
    for c in fair:
        comparison = c.stats.vs_baseline
        if comparison is None or comparison.significant:
            continue
        samples = samples_for(study.baseline_record, comparison.metric)
        values = seed_values(c.record, comparison.metric)
        base = seed_values(study.baseline_record, comparison.metric)
        spread = max(
            filter(None, (per_seed_sd(values, samples), per_seed_sd(base, samples))), default=None
        )
        needed = seeds_needed(comparison.delta, spread or pooled_std(values, base), level)
        entries.append(
            Inconclusive(
                variant=c.name,
                delta=comparison.delta,
                p_value=comparison.p_adjusted,
                ci_low=comparison.ci_low,
                ci_high=comparison.ci_high,
                seeds_needed=needed,
                statement=_inconclusive_text(c, needed, min(len(values), len(base)), level),
            )
        )
    return entries


def _inconclusive_text(c: Contrast, needed: int | None, seeds: int, level: float) -> str:
    comparison = c.stats.vs_baseline
    of = f" of {metric_words(c.metric, short=True)}" if c.metric == "balanced_accuracy" else ""
    head = f"{c.name} ({describe(c.changes)}): {points(comparison.delta)}{of}"
    if comparison.p_value is None:
        return (
            f"{head} from {seeds} seed{'s' if seeds != 1 else ''} per side: a test needs at least "
            "2 seeds on each side; run at least 3 seeds per variant (ablation.seeds)."
        )
    bounds = (
        f" (95% CI {comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f}, "
        f"{p_text(comparison.p_adjusted)}): no gain larger than {max(0.0, comparison.ci_high) * 100:.1f} "
        f"points and no loss larger than {max(0.0, -comparison.ci_low) * 100:.1f} points"
    )
    if comparison.ci_high <= 0 or comparison.ci_low >= 0:
        sign = "loss" if comparison.ci_high <= 0 else "gain"
        low, high = sorted(abs(v) * 100 for v in (comparison.ci_low, comparison.ci_high))
        return (
            f"{head} ({p_text(comparison.p_adjusted)}): a {sign} of {low:.1f} to {high:.1f} points "
            "by its own interval, but not significant once adjusted for the study's "
            f"comparisons; about {needed or 'more'} seeds per variant would settle it."
        )
    if abs(comparison.delta) < MIN_GAIN and comparison.ci_high < MIN_GAIN:
        return f"{head}{bounds}; whatever effect it has is too small to matter."
    if needed is None or needed > PRACTICAL_SEEDS:
        return f"{head}{bounds}; the effect is too small for any practical number of seeds."
    if needed <= seeds:
        return (
            f"{head}{bounds}; an effect this size sits at the edge of what {seeds} seeds "
            f"detect at the threshold it faces (raw p below {level:.3g}): rerun it on fresh seeds "
            "to settle it."
        )
    return (
        f"{head}{bounds}; about {needed} seeds per variant would detect an effect this size "
        f"at the threshold it faces (raw p below {level:.3g}; {seeds} seeds now)."
    )


def statistics(study: StudyContrasts | None, alpha: float) -> Statistics:
    procedure = "Benjamini-Hochberg"
    if study is None:
        return Statistics(
            procedure=procedure, alpha=alpha, comparisons=0, seeds=0, detectable_effect=None,
            underpowered=False, statement="The study has no runs to compare.",
        )  # fmt: skip
    fair = [c for c in study.contrasts if comparable(c)]
    m = max(1, sum(1 for c in fair if c.stats.vs_baseline and c.stats.vs_baseline.p_value is not None))
    values = seed_accuracies(study.baseline_record)
    sd = per_seed_sd(values, samples_tested(study.baseline_record))
    seeds = len(values)
    detectable = detectable_effect(seeds, sd, alpha / m)
    underpowered = detectable is None or detectable > MATERIAL_EFFECT
    statement = (
        f"Significance: {procedure} over the study's {m} comparison{'s' if m > 1 else ''} with "
        f"the baseline (false discovery rate {alpha:g}); every p quoted is the adjusted one."
    )
    if detectable is not None:
        statement += (
            f" With {seeds} seeds per variant it detects differences of about "
            f"{detectable * 100:.1f} points (80% power at the strictest threshold)."
        )
    if underpowered:
        needed = seeds_needed(MATERIAL_EFFECT, sd, alpha / m) if sd else None
        statement += (
            f" This study is too small to tell effects of {MATERIAL_EFFECT * 100:.0f} points from "
            "noise"
            + (f": about {needed} seeds per variant would (ablation.seeds)." if needed else ".")
        )
    return Statistics(
        procedure=procedure,
        alpha=alpha,
        comparisons=m,
        seeds=seeds,
        detectable_effect=detectable,
        underpowered=underpowered,
        statement=statement,
    )

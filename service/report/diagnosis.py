"""The diagnosis: ranked findings on what lowers test accuracy, and what the seeds cannot tell.

A finding needs significant evidence (Welch p < alpha, a one-sided test across seeds for curve
shapes, every seed diverging, or a fact of the data); see `rules` and `data_facts`. Every variant
whose comparison with the baseline is not significant becomes an `Inconclusive` entry instead,
with the seeds a study would need to settle it.
"""

from __future__ import annotations

from service.report.contrast import Study, build_study
from service.report.data_facts import data_findings
from service.report.models import Finding, Inconclusive, StudyData, VariantStats
from service.report.rules import RULES
from service.report.stats import MAX_SEEDS, pooled_std, seed_accuracies, seeds_needed
from service.report.wording import p_text, points


def diagnose(
    data: StudyData, stats: list[VariantStats], alpha: float = 0.05
) -> tuple[list[Finding], list[Inconclusive]]:
    """Findings ranked by magnitude (largest first) and the comparisons the seeds cannot settle."""
    if not data.variants:
        return [], []
    study = build_study(data, stats, alpha)
    findings: list[Finding] = []
    claimed: set[str] = set()
    for rule in RULES:
        for finding in rule(study, claimed):
            claimed.update(finding.variants)
            findings.append(finding)
    findings.extend(data_findings(data, study.config))
    findings.sort(key=lambda f: -f.magnitude)
    return findings, inconclusive(study)


# What the seeds cannot tell


def inconclusive(study: Study) -> list[Inconclusive]:
    entries = []
    baseline_values = seed_accuracies(study.baseline_record)
    for c in study.contrasts:
        comparison = c.stats.vs_baseline
        if comparison is None or comparison.significant:
            continue
        values = seed_accuracies(c.record)
        sd = pooled_std(values, baseline_values)
        needed = seeds_needed(comparison.delta, sd, study.alpha)
        entries.append(
            Inconclusive(
                variant=c.name,
                delta=comparison.delta,
                p_value=comparison.p_value,
                seeds_needed=needed,
                statement=_inconclusive_text(
                    c.name,
                    comparison.delta,
                    comparison.p_value,
                    needed,
                    sd,
                    len(values),
                    len(baseline_values),
                ),
            )
        )
    return entries


def _inconclusive_text(
    name: str,
    delta: float,
    p_value: float | None,
    needed: int | None,
    sd: float | None,
    n_variant: int,
    n_baseline: int,
) -> str:
    head = f"The study cannot tell whether {name} changes test accuracy ({points(delta)}"
    if p_value is not None:
        head += f", {p_text(p_value)})"
    elif min(n_variant, n_baseline) < 2:
        head += (
            f" from {n_variant} and {n_baseline} seeds): a t-test needs at least 2 seeds on each "
            "side"
        )
    else:
        head += "): every seed gave the same test accuracy on both sides, so there is no noise to test against"
    seeds = f" ({min(n_variant, n_baseline)} now)."
    if needed is not None:
        return f"{head}; about {needed} seeds per variant would be needed to detect an effect this size{seeds}"
    if delta and sd:
        return f"{head}; more than {MAX_SEEDS} seeds per variant would be needed to detect an effect this small."
    if not sd and min(n_variant, n_baseline) < 2:
        return f"{head}; run at least 3 seeds per variant (ablation.seeds) to estimate the noise."
    return f"{head}."

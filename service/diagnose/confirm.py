"""Confirmation on fresh seeds: which comparisons are open, and what their fresh seeds decide.

The procedure (two stages, screen then confirm):
- *Screening* is the study as the report judges it: Benjamini-Hochberg over every comparison
  with the baseline. A fix significant there (by at least MIN_GAIN) is taken as it is.
- A comparison is *open* when its estimate is a gain of at least MIN_GAIN that the screening
  seeds did not settle: significant before the adjustment but not after, or an interval that
  holds 0 as well as that gain (both are a gain of MIN_GAIN or more, not significant). A gain
  estimated below MIN_GAIN is not open even when its interval reaches MIN_GAIN: with 3 seeds
  nearly every null change's interval does, and a healthy baseline's probes would all be
  retrained on noise. Open comparisons (the most promising first, as many as the budget allows)
  are trained again, with the baseline, on fresh seeds the study has not used, as variants of
  their own (`lr 0.0001 (confirm)`, `baseline (confirm)`), up to `max_seeds` per config in all.
- *The decision is made on the confirmation seeds alone*: Welch's t-test of each candidate's
  fresh runs against the baseline's fresh runs (each seed's variance floored by the binomial
  noise of the test split, as the report does; on balanced accuracy for a change of class
  weights or resampling alone, as the report screens it), Holm's step-down over the
  candidates confirmed together, at the study's alpha, and a gain of at least MIN_GAIN. The
  screening seeds chose the candidates; they never enter the test that decides, so the
  selection cannot inflate it, and Holm keeps the chance of confirming any null candidate at most alpha. A candidate not
  confirmed is refuted for this diagnosis: there is one confirmation stage, never a second look.
"""

from __future__ import annotations

import math

from scipy import stats as sps

from service.diagnose.models import BASELINE, FixFound, Stage
from service.report.balance import BALANCE_PATHS
from service.report.models import Summary
from service.report.rules.thresholds import MIN_GAIN
from service.report.stats import binomial_var
from service.report.variant_models import CONFIRM_SUFFIX, MetricStats, VariantStats

NOT_FIXES = ("dataset.", "training.train_fraction")
"""Paths of variants that are never a fix: data that changes the samples (scored on another
test set; `dataset.scale` excepted) and the learning curve's smaller training shares."""


def is_candidate_fix(stats: VariantStats) -> bool:
    """A screening variant whose change could be a fix: not the baseline, not a confirmation
    or repair run, not a data change nor a learning-curve point."""
    if stats.name == BASELINE or stats.name.endswith(CONFIRM_SUFFIX) or not stats.overrides:
        return False
    return not any(
        (path == "dataset" or path.startswith(NOT_FIXES)) and path != "dataset.scale"
        for path in stats.overrides
    )


def open_comparisons(summary: Summary) -> list[VariantStats]:
    """Gains the screening seeds did not settle, the most promising (lowest raw p) first."""
    found = []
    for stats in summary.variants[1:]:
        c = stats.vs_baseline
        if not is_candidate_fix(stats) or c is None or c.significant:
            continue
        if c.delta >= MIN_GAIN:
            found.append(stats)
    return sorted(
        found, key=lambda s: (s.vs_baseline.p_value is None, s.vs_baseline.p_value or 1.0)
    )


def fresh_seeds(stages: list[Stage], count: int) -> list[int]:
    """`count` seeds above every seed the study has used."""
    first = max((seed for stage in stages for seed in stage.seeds), default=-1) + 1
    return list(range(first, first + count))


def confirmation_seed_count(
    summary: Summary, candidates: list[VariantStats], base_seeds: int, max_seeds: int
) -> int:
    """Fresh seeds per config: what the report says would settle the candidates (at least as
    many as the screening had), within max_seeds per config in all (screening + fresh)."""
    needed = {i.variant: i.seeds_needed for i in summary.inconclusive}
    wanted = max((needed.get(c.name) or max_seeds for c in candidates), default=base_seeds)
    room = max_seeds - max([summary.variants[0].seeds, *(c.seeds for c in candidates)])
    return max(0, min(max(wanted, base_seeds), room))


def welch(a: MetricStats, b: MetricStats, test_samples: int | None) -> tuple[float, float | None]:
    """(mean(a) - mean(b), two-sided p) of Welch's t-test from each side's mean, spread and
    count, with the binomial floor; p None when a side has fewer than 2 values."""
    if a.mean is None or b.mean is None:
        return 0.0, None
    delta = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return delta, None
    var = [max((s.std or 0.0) ** 2, binomial_var(s.mean, test_samples)) / s.n for s in (a, b)]
    se = math.sqrt(sum(var))
    if se == 0:
        return delta, None
    dof = sum(var) ** 2 / (var[0] ** 2 / (a.n - 1) + var[1] ** 2 / (b.n - 1))
    return delta, float(min(1.0, 2 * sps.t.sf(abs(delta) / se, dof)))


def holm(p_values: list[float | None], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level alpha."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    rejected = [False] * len(p_values)
    for rank, (p, index) in enumerate(order):
        if p >= alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected


def judged_on(overrides: dict) -> str:
    """The metric a confirmation compares on: balanced accuracy for a change of class weights or
    resampling alone (as the report screens it, `service.report.balance`), else test accuracy."""
    balancing = overrides and all(path.startswith(BALANCE_PATHS) for path in overrides)
    return "balanced_accuracy" if balancing else "test_accuracy"


def decide(
    summary: Summary, stage: Stage, test_samples: int | None
) -> tuple[list[FixFound], list[str]]:
    """The confirmation stage's verdict: (fixes confirmed, screening variants refuted)."""
    by_name = {s.name: s for s in summary.variants}
    base = by_name.get(BASELINE + CONFIRM_SUFFIX)
    tested = [v for v in stage.variants if v.name != BASELINE + CONFIRM_SUFFIX]
    results = []
    for variant in tested:
        stats = by_name.get(variant.name)
        if base is None or stats is None:
            results.append((variant, 0.0, None))
            continue
        metric = judged_on(variant.overrides)
        ours, theirs = getattr(stats, metric), getattr(base, metric)
        if ours is None or theirs is None:
            results.append((variant, 0.0, None))
            continue
        delta, p = welch(ours, theirs, test_samples)
        results.append((variant, delta, p))
    rejected = holm([p for _, _, p in results], summary.alpha)
    fixes, refuted = [], []
    for (variant, delta, p), significant in zip(results, rejected, strict=True):
        name = variant.name.removesuffix(CONFIRM_SUFFIX)
        if significant and delta >= MIN_GAIN:
            fixes.append(
                FixFound(
                    variant=name,
                    overrides=variant.overrides,
                    gain=delta,
                    decided_by="confirmation",
                    p_value=p,
                )
            )
        else:
            refuted.append(name)
    return fixes, refuted

"""Statistics across seeds: per-variant metrics, the comparison with the baseline, curves.

Only succeeded runs (those with metrics) enter the accuracy statistics; diverged runs are
counted. Intervals are t-intervals; the baseline comparison is Welch's t-test, whose interval of
the difference uses the Welch-Satterthwaite degrees of freedom. Nothing here returns NaN: an
undefined quantity is None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats as sps

from service.records import EpochRecord, RunMetrics
from service.report.models import Comparison, Curves, MetricStats, VariantRecord, VariantStats

MAX_SEEDS = 10_000
"""`seeds_needed` searches up to this many seeds per variant; beyond it, it answers None."""


def finite(values: Iterable[float | None]) -> np.ndarray:
    """The values that are real numbers (None, NaN and infinities dropped), as float64."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return np.asarray(kept, dtype=np.float64)


def sample_var(x: np.ndarray) -> float:
    """Sample variance (ddof=1); exactly 0 for identical values, whatever the rounding."""
    return 0.0 if np.ptp(x) == 0 else float(x.var(ddof=1))


def metric_stats(values: Iterable[float | None], confidence: float = 0.95) -> MetricStats:
    """Mean, sample std (ddof=1) and t-interval of the mean; std and interval need 2 values."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return MetricStats(n=0, mean=None, std=None, ci_low=None, ci_high=None)
    mean = float(x.mean())
    if n == 1:
        return MetricStats(n=1, mean=mean, std=None, ci_low=None, ci_high=None)
    std = math.sqrt(sample_var(x))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return MetricStats(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half)


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pooled sample standard deviation of two groups; None without a degree of freedom."""
    a, b = finite(a), finite(b)
    dof = len(a) + len(b) - 2
    if dof < 1:
        return None
    squares = sum((len(x) - 1) * sample_var(x) for x in (a, b) if len(x) > 1)
    return math.sqrt(squares / dof)


def compare(
    variant_values: Sequence[float | None],
    baseline_values: Sequence[float | None],
    alpha: float = 0.05,
) -> Comparison | None:
    """Welch's t-test of variant against baseline; None when a side has no values.

    p-value, interval and significance need 2 values on each side and some spread: with zero
    variance on both sides the t statistic is undefined, so p is None and nothing is significant.
    """
    v, b = finite(variant_values), finite(baseline_values)
    if len(v) == 0 or len(b) == 0:
        return None
    delta = float(v.mean() - b.mean())
    sd = pooled_std(v, b)
    effect = None
    if sd:
        correction = 1 - 3 / (4 * (len(v) + len(b)) - 9)  # Hedges' small-sample correction
        effect = delta / sd * correction
    p_value = ci_low = ci_high = None
    if len(v) >= 2 and len(b) >= 2:
        var_v, var_b = sample_var(v) / len(v), sample_var(b) / len(b)
        se = math.sqrt(var_v + var_b)
        if se > 0:
            p_value = float(sps.ttest_ind(v, b, equal_var=False).pvalue)
            dof = (var_v + var_b) ** 2 / (var_v**2 / (len(v) - 1) + var_b**2 / (len(b) - 1))
            half = float(sps.t.ppf(1 - alpha / 2, dof)) * se
            ci_low, ci_high = delta - half, delta + half
    return Comparison(
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        effect_size=effect,
        significant=p_value is not None and p_value < alpha,
    )


def power(n: int, effect: float, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with n per group at standardized effect `effect`."""
    dof = 2 * n - 2
    critical = sps.t.ppf(1 - alpha / 2, dof)
    shift = abs(effect) * math.sqrt(n / 2)
    value = sps.nct.sf(critical, dof, shift) + sps.nct.cdf(-critical, dof, shift)
    if not math.isfinite(value):  # scipy's nct gives NaN far in the tail; t is normal there
        value = sps.norm.sf(critical - shift) + sps.norm.cdf(-critical - shift)
    return float(min(value, 1.0))


def seeds_needed(
    delta: float, sd_pooled: float | None, alpha: float = 0.05, target_power: float = 0.8
) -> int | None:
    """Seeds per variant for `target_power` to detect `delta` given the spread `sd_pooled`.

    None when the effect or the spread is zero (or unknown), or more than MAX_SEEDS are needed.
    """
    if not sd_pooled or not delta or not math.isfinite(delta) or not math.isfinite(sd_pooled):
        return None
    effect = abs(delta) / sd_pooled
    high = 2  # power grows with n: double until it suffices, then bisect
    while power(high, effect, alpha) < target_power:
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(2, high // 2)
    while low < high:
        middle = (low + high) // 2
        if power(middle, effect, alpha) >= target_power:
            high = middle
        else:
            low = middle + 1
    return low


# Per-variant statistics


def _last(history: list[EpochRecord], field: str) -> float | None:
    return getattr(history[-1], field) if history else None


def _gap(history: list[EpochRecord]) -> float | None:
    train, val = _last(history, "accuracy"), _last(history, "val_accuracy")
    return None if train is None or val is None else train - val


def _best_epoch(history: list[EpochRecord]) -> float | None:
    scored = [(r.val_accuracy, -r.epoch, r.epoch) for r in history if r.val_accuracy is not None]
    scored = [s for s in scored if math.isfinite(s[0])]
    return float(max(scored)[2]) if scored else None  # the earliest epoch among ties


def curves(metrics: list[RunMetrics]) -> Curves:
    """Per-epoch mean and std across seeds, aligned by epoch number; a run that stopped early
    contributes to the epochs it ran."""
    by_epoch: dict[int, list[EpochRecord]] = {}
    for run in metrics:
        for record in run.history:
            by_epoch.setdefault(record.epoch, []).append(record)
    epochs = sorted(by_epoch)
    series: dict[str, list[float | None]] = {}
    for field in ("loss", "accuracy", "val_loss", "val_accuracy"):
        means, stds = [], []
        for epoch in epochs:
            summary = metric_stats(getattr(r, field) for r in by_epoch[epoch])
            means.append(summary.mean)
            stds.append(summary.std)
        series[f"{field}_mean"], series[f"{field}_std"] = means, stds
    rates = [metric_stats(r.learning_rate for r in by_epoch[epoch]).mean for epoch in epochs]
    return Curves(epochs=epochs, learning_rate=rates, **series)


def variant_stats(
    variant: VariantRecord, baseline: VariantRecord | None, alpha: float = 0.05
) -> VariantStats:
    """Everything the report says about one variant; `baseline` None for the baseline itself."""
    done = [run.metrics for run in variant.runs if run.metrics is not None]
    histories = [m.history for m in done]
    diverged = sum(1 for run in variant.runs if run.metrics is None and run.state == "diverged")
    comparison = None
    if baseline is not None:
        comparison = compare(seed_accuracies(variant), seed_accuracies(baseline), alpha)
    return VariantStats(
        name=variant.name,
        factor=variant.factor,
        overrides=variant.overrides,
        run_ids=[run.run_id for run in variant.runs],
        seeds=len(variant.runs),
        succeeded=len(done),
        diverged=diverged,
        failed=len(variant.runs) - len(done) - diverged,
        test_accuracy=metric_stats(m.test.accuracy for m in done),
        test_loss=metric_stats(m.test.loss for m in done),
        val_accuracy=metric_stats(_last(h, "val_accuracy") for h in histories),
        val_loss=metric_stats(_last(h, "val_loss") for h in histories),
        train_accuracy=metric_stats(_last(h, "accuracy") for h in histories),
        train_val_gap=metric_stats(_gap(h) for h in histories),
        best_epoch=metric_stats(_best_epoch(h) for h in histories),
        vs_baseline=comparison,
        curves=curves(done),
    )


def seed_accuracies(variant: VariantRecord) -> list[float]:
    """Test accuracy of each succeeded run of the variant."""
    return [run.metrics.test.accuracy for run in variant.runs if run.metrics is not None]

"""Statistics across seeds: per-variant metrics, the comparison with the baseline, curves.

Only succeeded runs (those with metrics) enter the accuracy statistics; diverged runs are
counted. The baseline comparison is Welch's t-test, whose interval of the difference uses the
Welch-Satterthwaite degrees of freedom. A test accuracy measured on n images carries binomial
noise of its own, p(1-p)/n, whatever the seeds do: each side's per-seed variance is at least
that floor, so identical seeds are not zero uncertainty and a large difference between them is
still decided. Accuracy intervals are computed on the logit scale, so they stay inside [0, 1].
Nothing here returns NaN: an undefined quantity is None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats as sps

from service.lifecycle.documents import EpochRecord, RunMetrics, TestMetrics
from service.report.study_data import VariantRecord
from service.report.variant_models import Comparison, Curves, JudgedMetric, MetricStats, VariantStats

UNIT = (0.0, 1.0)
"""The range of an accuracy."""
MAX_SEEDS = 10_000
"""`seeds_needed` searches up to this many seeds per variant; beyond it, it answers None."""


def finite(values: Iterable[float | None]) -> np.ndarray:
    """The values that are real numbers (None, NaN and infinities dropped), as float64."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return np.asarray(kept, dtype=np.float64)


def sample_var(x: np.ndarray) -> float:
    """Sample variance (ddof=1); exactly 0 for identical values, whatever the rounding."""
    return 0.0 if np.ptp(x) == 0 else float(x.var(ddof=1))


def binomial_var(accuracy: float, samples: int | None) -> float:
    """Variance of an accuracy measured on `samples` images (0 when unknown); the accuracy is
    kept half an image away from 0 and 1, where p(1-p) would vanish."""
    if not samples:
        return 0.0
    p = min(max(accuracy, 0.5 / samples), 1 - 0.5 / samples)
    return p * (1 - p) / samples


def metric_stats(
    values: Iterable[float | None],
    confidence: float = 0.95,
    accuracy_samples: int | None = None,
    bounds: tuple[float, float] | None = None,
) -> MetricStats:
    """Mean, sample std (ddof=1) and t-interval of the mean; std and interval need 2 values.

    `bounds` is the range the metric can take (an accuracy's [0, 1]): a t-interval of two
    far-apart seeds would otherwise reach past it, and is cut there.

    With `accuracy_samples` (the values are accuracies measured on that many images) the
    interval is a logit-scale t-interval whose per-seed variance has the binomial floor: it
    stays inside [0, 1] and never collapses to a point.
    """
    x = finite(values)
    n = len(x)
    if n == 0:
        return MetricStats(n=0, mean=None, std=None, ci_low=None, ci_high=None)
    mean = float(x.mean())
    if n == 1:
        return MetricStats(n=1, mean=mean, std=None, ci_low=None, ci_high=None)
    std = math.sqrt(sample_var(x))
    t = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
    if accuracy_samples is None:
        half = t * std / math.sqrt(n)
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
        return MetricStats(n=n, mean=mean, std=std, ci_low=low, ci_high=high)
    se = math.sqrt(max(std**2, binomial_var(mean, accuracy_samples)) / n)
    p = min(max(mean, 0.5 / accuracy_samples), 1 - 0.5 / accuracy_samples)
    half = t * se / (p * (1 - p))  # the delta method: d logit(p) / dp = 1 / (p (1 - p))
    centre = math.log(p / (1 - p))
    low, high = (1 / (1 + math.exp(-(centre + sign * half))) for sign in (-1, 1))
    return MetricStats(n=n, mean=mean, std=std, ci_low=min(low, mean), ci_high=max(high, mean))


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
    test_samples: int | None = None,
) -> Comparison | None:
    """Welch's t-test of variant against baseline; None when a side has no values.

    p-value, interval and significance need 2 values on each side. With `test_samples` (the
    test split's size) each side's per-seed variance is at least the binomial variance of its
    accuracy, so identical seeds on both sides still give a test; without it, zero spread on
    both sides leaves p undefined (None) and nothing significant.
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
    floored = False
    if len(v) >= 2 and len(b) >= 2:
        seed_var = [sample_var(x) for x in (v, b)]
        floor = [binomial_var(float(x.mean()), test_samples) for x in (v, b)]
        floored = any(f > s for s, f in zip(seed_var, floor, strict=True))
        var_v, var_b = (max(s, f) / len(x) for s, f, x in zip(seed_var, floor, (v, b), strict=True))
        se = math.sqrt(var_v + var_b)
        if se > 0:
            dof = (var_v + var_b) ** 2 / (var_v**2 / (len(v) - 1) + var_b**2 / (len(b) - 1))
            p_value = float(min(1.0, 2 * sps.t.sf(abs(delta) / se, dof)))
            half = float(sps.t.ppf(1 - alpha / 2, dof)) * se
            ci_low, ci_high = max(-1.0, delta - half), min(1.0, delta + half)
    return Comparison(
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        effect_size=effect,
        p_adjusted=p_value,
        significant=p_value is not None and p_value < alpha,
        binomial_floor=floored,
    )


def adjust(comparisons: list[Comparison], alpha: float) -> None:
    """Benjamini-Hochberg over the study's comparisons with the baseline, a screening family:
    at most a share alpha of the comparisons called significant are expected to be noise.
    `p_adjusted` becomes the BH-adjusted p and `significant` means p_adjusted < alpha."""
    tested = [c for c in comparisons if c.p_value is not None]
    if not tested:
        return
    adjusted = sps.false_discovery_control([c.p_value for c in tested], method="bh")
    for comparison, value in zip(tested, adjusted, strict=True):
        comparison.p_adjusted = float(min(1.0, value))
        comparison.significant = comparison.p_adjusted < alpha


def holm(comparisons: list[Comparison], alpha: float) -> None:
    """Holm's step-down adjustment over a small confirmatory family (the staged diagnosis's
    confirmation, decided on its fresh seeds alone): `p_adjusted` becomes Holm's adjusted p
    and `significant` means p_adjusted < alpha; the family-wise error rate stays at alpha."""
    tested = sorted((c for c in comparisons if c.p_value is not None), key=lambda c: c.p_value)
    running = 0.0
    for rank, comparison in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * comparison.p_value))
        comparison.p_adjusted = running
        comparison.significant = running < alpha


def threshold_to_join(comparisons: list[Comparison], alpha: float) -> float:
    """The raw p a comparison not yet significant must reach to become significant under BH
    with the others as they are: alpha x (R + 1) / m, R the comparisons already significant."""
    m = sum(1 for c in comparisons if c.p_value is not None) or 1
    r = sum(1 for c in comparisons if c.significant)
    return alpha * min(m, r + 1) / m


def per_seed_sd(values: Sequence[float], test_samples: int | None) -> float | None:
    """A side's per-seed spread with the binomial floor (None without a value)."""
    x = finite(values)
    if len(x) == 0:
        return None
    seed_var = sample_var(x) if len(x) > 1 else 0.0
    return math.sqrt(max(seed_var, binomial_var(float(x.mean()), test_samples))) or None


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


def detectable_effect(
    n: int, sd: float | None, alpha: float = 0.05, target_power: float = 0.8
) -> float | None:
    """The smallest difference n seeds per side detect with `target_power` at level `alpha`
    given a per-seed spread `sd` (None when the spread is unknown or n < 2)."""
    if not sd or n < 2 or not math.isfinite(sd):
        return None
    low, high = 0.0, 1.0
    while power(n, high, alpha) < target_power:
        high *= 2
        if high > 1e6:
            return None
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if power(n, middle, alpha) < target_power else (low, middle)
    return high * sd


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
    variant: VariantRecord,
    baseline: VariantRecord | None,
    alpha: float = 0.05,
    metric: JudgedMetric = "test_accuracy",
) -> VariantStats:
    """Everything the report says about one variant; `baseline` None for the baseline itself.
    `metric` is what the comparison with the baseline is on (balanced accuracy for a variant
    that only reweights or resamples the classes)."""
    done = [run.metrics for run in variant.runs if run.metrics is not None]
    histories = [m.history for m in done]
    diverged = sum(1 for run in variant.runs if run.metrics is None and run.state == "diverged")
    comparison = None
    samples = samples_tested(variant)
    if baseline is not None:
        comparison = compare(
            seed_values(variant, metric),
            seed_values(baseline, metric),
            alpha,
            samples_for(variant, metric) or samples_for(baseline, metric),
        )
        if comparison is not None:
            comparison.metric = metric
    return VariantStats(
        name=variant.name,
        factor=variant.factor,
        overrides=variant.overrides,
        run_ids=[run.run_id for run in variant.runs],
        seeds=len(variant.runs),
        succeeded=len(done),
        diverged=diverged,
        failed=len(variant.runs) - len(done) - diverged,
        test_accuracy=metric_stats((m.test.accuracy for m in done), accuracy_samples=samples),
        test_loss=metric_stats(m.test.loss for m in done),
        val_accuracy=metric_stats((_last(h, "val_accuracy") for h in histories), bounds=UNIT),
        val_loss=metric_stats(_last(h, "val_loss") for h in histories),
        train_accuracy=metric_stats((_last(h, "accuracy") for h in histories), bounds=UNIT),
        train_val_gap=metric_stats((_gap(h) for h in histories), bounds=(-1.0, 1.0)),
        best_epoch=metric_stats(_best_epoch(h) for h in histories),
        vs_baseline=comparison,
        balanced_accuracy=metric_stats(
            seed_values(variant, "balanced_accuracy"),
            accuracy_samples=samples_for(variant, "balanced_accuracy"),
        ),
        curves=curves(done),
    )


def seed_accuracies(variant: VariantRecord) -> list[float]:
    """Test accuracy of each succeeded run of the variant."""
    return [run.metrics.test.accuracy for run in variant.runs if run.metrics is not None]


def samples_tested(variant: VariantRecord) -> int | None:
    """The size of the test split the variant's accuracies were measured on."""
    sizes = [run.metrics.test.samples for run in variant.runs if run.metrics is not None]
    return min(sizes) if sizes else None


# Balanced accuracy: the mean of the per-class recalls


def balanced_accuracy(test: TestMetrics) -> float | None:
    """Mean recall over the classes present in the test split (scikit-learn's
    balanced_accuracy_score), from the confusion matrix; None without a test sample."""
    counts = _class_counts(test)
    if counts is None:
        return None
    correct, n = counts
    return float(np.mean(correct / n))


def balanced_samples(test: TestMetrics) -> int | None:
    """The number of images whose binomial noise equals the balanced accuracy's, for the
    floor `compare` puts under each seed's variance. Each class's recall is measured on that
    class's samples alone, so the mean of K recalls has variance sum(r(1-r)/n_k) / K^2: a
    minority class of few test samples makes it noisier than plain accuracy on them all."""
    counts = _class_counts(test)
    if counts is None:
        return None
    correct, n = counts
    recall = np.clip(correct / n, 0.5 / n, 1 - 0.5 / n)
    variance = float(np.sum(recall * (1 - recall) / n)) / len(n) ** 2
    mean = float(np.clip(recall.mean(), 0.5 / n.sum(), 1 - 0.5 / n.sum()))
    return max(1, int(mean * (1 - mean) / variance)) if variance > 0 else int(n.sum())


def seed_values(variant: VariantRecord, metric: JudgedMetric) -> list[float]:
    """Each succeeded run's test accuracy or balanced accuracy."""
    if metric == "test_accuracy":
        return seed_accuracies(variant)
    done = [run.metrics.test for run in variant.runs if run.metrics is not None]
    return [value for value in map(balanced_accuracy, done) if value is not None]


def samples_for(variant: VariantRecord, metric: JudgedMetric) -> int | None:
    """The test size behind `metric`'s binomial floor: the test split's, or for balanced
    accuracy its equivalent (`balanced_samples`), the smallest across the variant's runs."""
    if metric == "test_accuracy":
        return samples_tested(variant)
    sizes = [balanced_samples(run.metrics.test) for run in variant.runs if run.metrics is not None]
    sizes = [size for size in sizes if size]
    return min(sizes) if sizes else None


def _class_counts(test: TestMetrics) -> tuple[np.ndarray, np.ndarray] | None:
    """(correct, samples) per class present in the test split, from the confusion matrix (rows:
    true class); None without a test sample."""
    matrix = np.asarray(test.confusion_matrix, dtype=np.float64)
    if matrix.ndim != 2 or not matrix.size:
        return None
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return np.diag(matrix)[present], support[present]

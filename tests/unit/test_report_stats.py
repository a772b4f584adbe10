"""service.report.stats, configs, data_facts and summary: the numbers behind the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from service.report.configs import apply_overrides, changes, flatten
from service.report.data_facts import dataset_facts
from service.report.models import Summary
from service.report.stats import compare, metric_stats, pooled_std, seeds_needed, variant_stats
from service.report.summary import summarize_study
from service.spec.datasets import KerasDataset, NpzDataset
from tests.planted_study import make_study

# metric_stats


def test_metric_stats_is_the_mean_sample_std_and_t_interval():
    values = [0.91, 0.93, 0.90, 0.94, 0.92]
    stats = metric_stats(values)
    mean, std = np.mean(values), np.std(values, ddof=1)
    half = sps.t.ppf(0.975, 4) * std / math.sqrt(5)
    assert stats.n == 5
    assert stats.mean == pytest.approx(mean) and stats.std == pytest.approx(std)
    assert stats.ci_low == pytest.approx(mean - half) and stats.ci_high == pytest.approx(
        mean + half
    )


def test_metric_stats_of_one_value_has_no_spread_and_of_none_has_nothing():
    one = metric_stats([0.9])
    assert (one.n, one.mean, one.std, one.ci_low, one.ci_high) == (1, 0.9, None, None, None)
    empty = metric_stats([])
    assert (empty.n, empty.mean, empty.std, empty.ci_low, empty.ci_high) == (
        0,
        None,
        None,
        None,
        None,
    )


def test_metric_stats_drops_missing_and_non_finite_values():
    stats = metric_stats([0.9, None, float("nan"), float("inf"), 0.8])
    assert stats.n == 2 and stats.mean == pytest.approx(0.85)


# compare


def test_compare_p_value_is_scipys_welch_test_and_interval_is_welch_satterthwaite():
    variant, baseline = [0.95, 0.97, 0.96, 0.99], [0.90, 0.93, 0.89, 0.91, 0.92]
    result = compare(variant, baseline)
    welch = sps.ttest_ind(variant, baseline, equal_var=False)
    assert result.p_value == pytest.approx(welch.pvalue, rel=1e-12)
    va, vb = np.var(variant, ddof=1) / 4, np.var(baseline, ddof=1) / 5
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    half = sps.t.ppf(0.975, dof) * math.sqrt(va + vb)
    delta = np.mean(variant) - np.mean(baseline)
    assert result.delta == pytest.approx(delta)
    assert (result.ci_low, result.ci_high) == (
        pytest.approx(delta - half),
        pytest.approx(delta + half),
    )
    sd = math.sqrt((3 * np.var(variant, ddof=1) + 4 * np.var(baseline, ddof=1)) / 7)
    assert result.effect_size == pytest.approx(delta / sd * (1 - 3 / (4 * 9 - 9)))
    assert result.significant


def test_compare_interval_contains_the_planted_difference():
    rng = np.random.default_rng(7)
    baseline = 0.90 + 0.01 * rng.standard_normal(8)
    variant = 0.93 + 0.01 * rng.standard_normal(8)
    result = compare(variant, baseline)
    assert result.ci_low < 0.03 < result.ci_high


def test_compare_without_any_spread_gives_no_p_value_and_is_not_significant():
    result = compare([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert result.delta == pytest.approx(0.1)
    assert result.p_value is None and result.ci_low is None and result.effect_size is None
    assert not result.significant
    assert "NaN" not in json.dumps(result.model_dump(mode="json"))


def test_compare_with_one_seed_on_a_side_has_a_delta_but_no_test():
    result = compare([0.95], [0.90, 0.91, 0.92])
    assert result.delta == pytest.approx(0.04)
    assert result.p_value is None and result.ci_low is None and not result.significant
    assert compare([], [0.9, 0.91]) is None


# seeds_needed


def test_seeds_needed_matches_textbook_power_and_falls_as_the_effect_grows():
    assert seeds_needed(0.5, 1.0) == 64  # Cohen: d=0.5 needs 64 per group for 80% power
    assert seeds_needed(1.0, 1.0) == 17
    needed = [seeds_needed(delta, 0.01) for delta in (0.002, 0.005, 0.01, 0.02, 0.05)]
    assert needed == sorted(needed, reverse=True) and needed[0] > needed[-1]


def test_seeds_needed_is_none_without_an_effect_or_spread():
    assert seeds_needed(0.0, 0.01) is None
    assert seeds_needed(0.01, 0.0) is None
    assert seeds_needed(0.01, None) is None
    assert seeds_needed(1e-6, 1.0) is None  # more than MAX_SEEDS


def test_pooled_std_needs_a_degree_of_freedom():
    assert pooled_std([0.9], [0.8]) is None
    assert pooled_std([0.9, 0.92], [0.8, 0.82]) == pytest.approx(np.std([0.9, 0.92], ddof=1))


# variant_stats


def test_variant_stats_counts_states_and_uses_only_succeeded_runs():
    data = make_study(
        {
            "baseline": {},
            "mixed": {
                "overrides": {"model.dropout": 0.2},
                "states": ["succeeded", "diverged", "failed", "succeeded", "cancelled"],
            },
        }
    )
    stats = variant_stats(data.variants[1], data.variants[0])
    assert (stats.seeds, stats.succeeded, stats.diverged, stats.failed) == (5, 2, 1, 2)
    assert stats.test_accuracy.n == 2
    assert stats.vs_baseline is not None and stats.vs_baseline.p_value is not None
    assert len(stats.run_ids) == 5


def test_variant_stats_best_epoch_gap_and_curves_across_early_stopped_seeds():
    data = make_study({"baseline": {"epochs": [10, 8, 10], "gap": 0.1}}, seeds=3)
    stats = variant_stats(data.variants[0], None)
    assert stats.vs_baseline is None
    assert stats.curves.epochs == list(range(1, 11))
    histories = [run.metrics.history for run in data.variants[0].runs]
    at_nine = [h[8].val_accuracy for h in histories if len(h) >= 9]
    assert stats.curves.val_accuracy_mean[8] == pytest.approx(np.mean(at_nine))
    assert stats.curves.val_accuracy_std[0] is not None
    best = [max(h, key=lambda r: r.val_accuracy).epoch for h in histories]
    assert stats.best_epoch.mean == pytest.approx(np.mean(best))
    gaps = [h[-1].accuracy - h[-1].val_accuracy for h in histories]
    assert stats.train_val_gap.mean == pytest.approx(np.mean(gaps))
    assert stats.train_accuracy.mean == pytest.approx(np.mean([h[-1].accuracy for h in histories]))


# configs


def test_flatten_and_changes_name_every_differing_dotted_path():
    base = {"model": {"dense": [128], "dropout": 0.0}, "augmentation": {"zoom": 0.0}}
    assert flatten(base) == {"model.dense.0": 128, "model.dropout": 0.0, "augmentation.zoom": 0.0}
    assert flatten({"model": {"dense": []}}) == {"model.dense": []}
    variant = apply_overrides(base, {"model.dropout": 0.5, "model.dense": [128, 64]})
    assert changes(base, variant) == {"model.dense.1": (None, 64), "model.dropout": (0.0, 0.5)}
    assert base["model"]["dropout"] == 0.0  # not modified in place


# summary


def test_summary_is_partial_and_notes_failed_and_unfinished_runs():
    data = make_study(
        {
            "baseline": {"states": ["succeeded", "succeeded", "failed"]},
            "dropout": {
                "overrides": {"model.dropout": 0.3},
                "states": ["succeeded", "running", "succeeded"],
            },
        },
        seeds=3,
    )
    summary = summarize_study(data, generated_at="2024-05-01T12:00:00+00:00")
    assert summary.partial
    assert summary.counts == {"failed": 1, "running": 1, "succeeded": 4}
    failed = next(note for note in summary.notes if "failed" in note)
    assert "baseline seed 2" in failed and "worker lost" in failed
    assert any("still running" in note and "dropout seed 1" in note for note in summary.notes)
    assert summary.baseline == "baseline" and summary.name == "planted"


def test_summary_of_a_finished_study_is_not_partial_and_round_trips_as_json():
    data = make_study({"baseline": {}, "dropout": {"overrides": {"model.dropout": 0.3}}})
    summary = summarize_study(data, generated_at="t")
    assert not summary.partial and summary.notes == []
    text = json.dumps(summary.model_dump(mode="json"))
    assert "NaN" not in text and "Infinity" not in text
    assert Summary.model_validate(json.loads(text)) == summary


def test_summary_counts_shared_runs_once_and_does_not_compare_a_copy_of_the_baseline():
    data = make_study({"baseline": {}, "dropout": {"overrides": {"model.dropout": 0.3}}})
    copy = type(data.variants[0])(name="same", factor="f", overrides={}, runs=data.variants[0].runs)
    data.variants.append(copy)
    summary = summarize_study(data, generated_at="t")
    assert summary.counts == {"succeeded": 10}
    assert all(item.variant != "same" for item in summary.inconclusive)
    assert any("same" in note for note in summary.notes)


# dataset_facts


def test_dataset_facts_find_planted_duplicates_imbalance_and_raw_range(tmp_path):
    rng = np.random.default_rng(0)
    counts = [60, 60, 12]
    y_train = np.repeat(np.arange(3), counts)
    x_train = rng.integers(0, 256, size=(len(y_train), 6, 6), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(20, 6, 6), dtype=np.uint8)
    x_test[:4] = x_train[[0, 5, 70, 131]]  # planted: 4 test images copied from training
    y_test = np.arange(20) % 3
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = NpzDataset(kind="npz", path=str(path), validation_split=0.0, scale="unit")
    facts = dataset_facts(spec)
    assert facts.train_class_counts == counts
    assert facts.train_test_duplicates == 4
    assert facts.raw_max > 200 and facts.raw_min >= 0 and facts.scale == "unit"
    assert (facts.train_size, facts.test_size) == (132, 20)


def test_dataset_facts_skip_downloads_and_unreadable_data(tmp_path):
    assert dataset_facts(KerasDataset(kind="mnist")) is None
    assert dataset_facts(NpzDataset(kind="npz", path=str(tmp_path / "missing.npz"))) is None


def test_variant_configs_fall_back_to_the_spec_and_overrides_when_run_json_is_missing():
    data = make_study(
        {
            "baseline": {},
            "flip": {"overrides": {"augmentation.horizontal_flip": True}, "test_accuracy": 0.87},
        }
    )
    for variant in data.variants:
        for run in variant.runs:
            run.config = {}
    summary = summarize_study(data, generated_at="t")
    assert [f.rule for f in summary.strengths] == ["overfitting"]  # adding a flip: more regularization
    assert summary.strengths[0].variants == ["baseline", "flip"] and summary.causes == []


def _comparison(p):
    from service.report.variant_models import Comparison

    return Comparison(
        delta=0.01, ci_low=0.0, ci_high=0.02, p_value=p, p_adjusted=p, effect_size=1.0,
        significant=p is not None and p < 0.05,
    )  # fmt: skip


def test_benjamini_hochberg_adjusts_the_study_wide_family_of_comparisons():
    from service.report.stats import adjust

    comparisons = [_comparison(p) for p in (0.03, 0.01, 0.04, 0.5)]
    adjust(comparisons + [_comparison(None)], 0.05)
    adjusted = [(c.p_adjusted, c.significant) for c in comparisons]
    # BH: p_(i) x m / i, made monotone from the top: 0.01 x 4/1, 0.03 x 4/2, 0.04 x 4/3, 0.5
    assert adjusted[1] == (pytest.approx(0.04), True)
    assert adjusted[0] == (pytest.approx(0.0533, abs=1e-3), False)
    assert adjusted[2] == (pytest.approx(0.0533, abs=1e-3), False)
    assert adjusted[3] == (pytest.approx(0.5), False)


def test_benjamini_hochberg_keeps_large_effects_of_a_ten_comparison_battery_significant():
    """Ten comparisons with 3 seeds: three real 25-point effects stay significant where Holm's
    step-down (which needs p < 0.005 for the first) would drop them with three noisy ones."""
    from service.report.stats import adjust

    ps = [0.004, 0.006, 0.012, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    comparisons = [_comparison(p) for p in ps]
    adjust(comparisons, 0.05)
    assert [c.significant for c in comparisons] == [True] * 3 + [False] * 7


def test_the_threshold_to_join_is_the_next_bh_step():
    from service.report.stats import adjust, threshold_to_join

    comparisons = [_comparison(p) for p in (0.001, 0.2, 0.4, 0.6)]
    adjust(comparisons, 0.05)
    assert threshold_to_join(comparisons, 0.05) == pytest.approx(0.05 * 2 / 4)


def test_an_accuracy_interval_of_two_far_apart_seeds_stays_inside_its_range():
    from service.report.stats import metric_stats

    wide = metric_stats([0.70, 0.99])
    assert wide.ci_low < 0 and wide.ci_high > 1  # two seeds' t-interval: -100% to 269%
    bounded = metric_stats([0.70, 0.99], bounds=(0.0, 1.0))
    assert (bounded.ci_low, bounded.ci_high) == (0.0, 1.0)
    assert (bounded.mean, bounded.std) == (wide.mean, wide.std)

"""service.diagnose, the search stage: the baseline comes first, then each symptom gets its own
search (a log-spaced learning-rate range, regularizers and a learning curve, class weighting,
capacity and epochs, input scaling, label smoothing), the most direct changes first; a healthy
baseline gets a short battery and then nothing."""

from __future__ import annotations

import math

import pytest

from tests.diagnose_planning import (
    BASELINE_DONE,
    CHANCE,
    SEEDS,
    assert_buildable,
    plan,
    rates,
    stage,
    summarize,
)
from tests.planted_study import clean_facts, config, make_study

HEALTHY = {"test_accuracy": 0.97, "sd": 0.004}


# The first stages


def test_the_first_stage_is_the_baseline_on_its_seeds():
    found = plan(None, [])
    assert found.kind == "baseline" and found.index == 0 and found.seeds == SEEDS
    assert [(v.name, v.overrides) for v in found.variants] == [("baseline", {})]


def test_a_chance_level_baseline_gets_a_log_spaced_learning_rate_range_in_both_directions_first():
    found = plan(summarize({"baseline": CHANCE}), [BASELINE_DONE])
    assert found.kind == "search" and found.index == 1 and found.seeds == SEEDS
    assert {v.factor for v in found.variants} == {"learning_rate"}
    values = sorted(rates(found))
    assert values[0] <= 1e-5 and values[-1] >= 0.1  # decades both ways around 1e-3
    steps = [math.log10(b / a) for a, b in zip(values, values[1:], strict=False)]
    assert all(step == pytest.approx(1.0) for step in steps if step < 1.5)  # log-spaced by decades
    assert sum(r < 1e-3 for r in values) >= 2 and sum(r > 1e-3 for r in values) >= 2
    assert sorted(rates(found)[:2]) == pytest.approx([1e-4, 1e-2])  # nearest the usual range first
    assert "learning-rate range" in found.reason and "both directions" in found.reason
    assert_buildable(found)


def test_a_rate_far_too_high_is_searched_down_through_the_optimizers_usual_range_clipped_above():
    base = {
        "dataset": {"kind": "digits", "validation_split": 0.1, "test_split": 0.25},
        "model": {"conv_blocks": [{"filters": 16}, {"filters": 32}], "dense": [64]},
        "optimizer": {"name": "adam", "learning_rate": 8.0},
        "training": {"epochs": 10, "batch_size": 32},
    }
    found = plan(summarize({"baseline": CHANCE}, base=base), [BASELINE_DONE], base=base)
    values = rates(found)
    assert max(values) <= 10.0  # the spec's bound: no rate above it is proposed
    assert min(values) <= 1e-4  # down through the whole of Adam's usual range (1e-4..1e-2)
    assert values[0] == pytest.approx(0.0008)  # the nearest to that middle is tried first


def test_an_overfit_baseline_gets_each_regularizer_a_smaller_model_and_a_learning_curve():
    summary = summarize({"baseline": {"test_accuracy": 0.60, "gap": 0.38}})
    found = plan(summary, [BASELINE_DONE])
    changed = {path for v in found.variants for path in v.overrides}
    assert {"model.dropout", "model.l2", "augmentation", "training.label_smoothing"} <= changed
    assert "half width" in [v.name for v in found.variants]
    curve = sorted(
        v.overrides["training.train_fraction"]
        for v in found.variants
        if v.factor == "learning_curve"
    )
    assert curve == [0.25, 0.5]
    assert "overfitting" in found.reason and "learning curve" in found.reason
    assert_buildable(found)


def test_a_collapsed_class_on_imbalanced_data_gets_class_weighting_and_oversampling():
    facts = clean_facts(train_class_counts=[400] * 9 + [20])
    summary = summarize(
        {"baseline": {"test_accuracy": 0.86, "gap": 0.1, "class_recall": {9: 0.0}}},
        seeds=5,
        dataset=facts,
    )
    found = plan(summary, [BASELINE_DONE])
    overrides = [v.overrides for v in found.variants]
    assert overrides[:2] == [
        {"training.class_weight": "balanced"},
        {"training.resample": "oversample"},
    ]
    assert "class weighting" in found.reason


def test_underfitting_searches_capacity_and_epochs_but_a_factory_model_is_not_widened():
    summary = summarize({"baseline": {"test_accuracy": 0.48, "gap": 0.02}})
    found = plan(summary, [BASELINE_DONE])
    assert {v.factor for v in found.variants} == {"width", "depth", "epochs"}
    factory = {**make_study({"baseline": {}}).spec, "model": {"factory": "tests.factories:tiny"}}
    base = {k: factory[k] for k in ("dataset", "model", "optimizer", "training")}
    found = plan(
        summarize({"baseline": {"test_accuracy": 0.48, "gap": 0.02}}, base=base),
        [BASELINE_DONE],
        base=base,
    )
    assert {v.factor for v in found.variants} == {"epochs"}
    assert "factory" in found.reason


def test_unscaled_input_behind_a_chance_baseline_adds_the_scaling_options_after_the_rate_range():
    base = make_study({"baseline": {}}).spec
    base = {k: base[k] for k in ("dataset", "model", "optimizer", "training")}
    base["dataset"] = {**base["dataset"], "scale": "none"}
    summary = summarize(
        {"baseline": CHANCE}, base=base, dataset=clean_facts(scale="none", raw_max=4095.0)
    )
    found = plan(summary, [BASELINE_DONE], base=base)
    factors = [v.factor for v in found.variants]
    assert set(factors) == {"learning_rate", "scale"}
    assert factors.index("scale") > max(i for i, f in enumerate(factors) if f == "learning_rate")
    assert found.variants[factors.index("scale")].overrides == {"dataset.scale": "auto"}


# A healthy baseline


def test_a_healthy_baseline_gets_a_short_battery_and_then_none():
    found = plan(summarize({"baseline": HEALTHY}), [BASELINE_DONE])
    assert found.kind == "search" and 2 <= len(found.variants) <= 5
    assert "no symptom" in found.reason
    done = [BASELINE_DONE, stage(1, "search", {v.name: v.overrides for v in found.variants})]
    # Probes that do not help (a healthy baseline is at its best): no gain to confirm.
    probes = {
        v.name: {"overrides": v.overrides, "test_accuracy": 0.96, "sd": 0.004}
        for v in found.variants
    }
    assert plan(summarize({"baseline": HEALTHY, **probes}), done) is None


def test_a_rate_far_too_low_is_searched_up_through_the_optimizers_usual_range():
    base = {**config(), "optimizer": {"name": "adam", "learning_rate": 1e-6}}
    found = plan(summarize({"baseline": CHANCE}, base=base), [BASELINE_DONE], base=base)
    assert max(rates(found)) >= 1e-2 and min(rates(found)) >= 1e-7


def test_a_chance_baseline_that_predicts_the_majority_class_gets_class_weighting_first():
    facts = clean_facts(train_class_counts=[1000] + [20] * 9)
    majority = {**CHANCE, "class_recall": {0: 1.0}, "wrong_as": 0}
    found = plan(summarize({"baseline": majority}, dataset=facts), [BASELINE_DONE])
    assert [v.factor for v in found.variants[:2]] == ["class_weight", "resample"]
    assert "learning_rate" in {v.factor for v in found.variants}
    spread = plan(summarize({"baseline": CHANCE}, dataset=facts), [BASELINE_DONE])
    assert spread.variants[0].factor == "learning_rate"  # at chance on every class: rate first


def test_a_rising_validation_curve_is_searched_with_more_epochs_and_higher_rates():
    found = plan(summarize({"baseline": {"curve": "rising"}}, seeds=5), [BASELINE_DONE])
    assert {v.factor for v in found.variants} == {"epochs", "learning_rate"}
    assert found.variants[0].factor == "epochs" and "more epochs" in found.reason
    higher = [
        v.overrides["optimizer.learning_rate"]
        for v in found.variants
        if v.factor == "learning_rate"
    ]
    assert higher and min(higher) > 1e-3  # only higher rates: the curve says training is slow


def test_test_accuracy_above_validation_says_labels_look_noisy_and_is_searched_first():
    # validation 10 points under test: noisy training labels, which explain the underfitting
    summary = summarize({"baseline": {"test_accuracy": 0.85, "val_offset": -0.10}}, seeds=5)
    assert {"test_above_validation", "underfitting"} <= {s.rule for s in summary.symptoms}
    found = plan(summary, [BASELINE_DONE])
    assert found.variants[0].overrides == {"training.label_smoothing": 0.1}
    assert "mislabelled" in found.reason
    assert_buildable(found)


@pytest.mark.parametrize(
    ("model", "expected"),
    [({"l2": 0.1}, {"no l2"}), ({"dropout": 0.9, "conv_dropout": 0.5}, {"no dropout", "no conv dropout"})],
)
def test_a_chance_baseline_with_glaring_regularization_searches_its_removal_first(model, expected):
    base = config({f"model.{k}": v for k, v in model.items()})
    found = plan(summarize({"baseline": CHANCE}, base=base), [BASELINE_DONE], base=base)
    names = [v.name for v in found.variants]
    assert expected <= set(names), names
    assert set(names[: len(expected)]) == expected  # before the learning-rate range
    assert any(v.factor == "learning_rate" for v in found.variants)  # which still comes
    assert_buildable(found, base=base)


def test_usual_regularization_does_not_jump_the_learning_rate_range():
    base = config({"model.l2": 0.0001, "model.dropout": 0.5})
    found = plan(summarize({"baseline": CHANCE}, base=base), [BASELINE_DONE], base=base)
    assert {v.factor for v in found.variants} == {"learning_rate"}

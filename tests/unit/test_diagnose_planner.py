"""service.diagnose: symptoms in, next stage out. Each study here is a planted one
(`tests/planted_study.py`) read by the real report (`summarize_study`), so the planner sees the
symptoms, comparisons and intervals the driver will hand it."""

from __future__ import annotations

import math

import pytest

from service.diagnose import DataShape, Stage, StageVariant, findings, next_stage
from service.lifecycle.documents import RoundDocument, Variant
from service.report.models import Summary
from service.report.summary import summarize_study
from service.spec.models import TrainConfig
from service.spec.shapes import check_model
from tests.planted_study import clean_facts, config, make_study

SEEDS = [0, 1, 2]
DIGITS = DataShape(input_shape=(8, 8, 1), num_classes=10, test_samples=360)
CHANCE = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.0, "gap_sd": 0.0}
HEALTHY = {"test_accuracy": 0.97, "sd": 0.004}


def summarize(variants: dict, seeds: int = 3, **options) -> Summary:
    options.setdefault("dataset", clean_facts())
    study = make_study(variants, seeds=seeds, **options)
    return summarize_study(study, generated_at="2024-05-01T12:00:00+00:00")


def stage(index: int, kind: str, variants: dict[str, dict], seeds: list[int] = SEEDS) -> Stage:
    """A stage done: `variants` maps names to overrides."""
    return Stage(
        index=index,
        kind=kind,
        reason="done",
        variants=[StageVariant(name=n, factor=None, overrides=o) for n, o in variants.items()],
        seeds=seeds,
    )


BASELINE_DONE = stage(0, "baseline", {"baseline": {}})


def plan(
    summary: Summary | None, stages: list[Stage], budget: int = 200, max_seeds: int = 10, base=None
):
    return next_stage(
        config(base=base),
        stages,
        summary,
        budget_runs=budget,
        max_seeds=max_seeds,
        seeds=SEEDS,
        data=DIGITS,
    )


def rates(found: Stage) -> list[float]:
    return [v.overrides["optimizer.learning_rate"] for v in found.variants]


def assert_buildable(found: Stage, base=None) -> None:
    """Every variant is a valid config that the declarative CNN can build on digits."""
    for variant in found.variants:
        from service.report.configs import apply_overrides
        from service.spec.training import FULL_DUMP

        full = TrainConfig.model_validate(config(base=base)).model_dump(
            mode="json", context=FULL_DUMP
        )
        built = TrainConfig.model_validate(apply_overrides(full, variant.overrides))
        check_model(built, DIGITS.input_shape, DIGITS.num_classes)


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


# Confirmation


OPEN = {"overrides": {"model.dropout": 0.5}, "test_accuracy": 0.925, "sd": 0.005}
"""+2.5 points on 3 seeds, each measured on 360 test images (a binomial spread of 1.6 points):
an interval that holds 0 and a 1-point gain."""


def test_confirmation_takes_only_open_comparisons_on_fresh_seeds():
    variants = {
        "baseline": {"sd": 0.005},
        "dropout 0.5": OPEN,
        "lr 0.01": {
            "overrides": {"optimizer.learning_rate": 0.01},
            "test_accuracy": 0.84,
            "sd": 0.02,
        },
        "epochs 20": {"overrides": {"training.epochs": 20}, "test_accuracy": 0.99, "sd": 0.002},
        "50% of training data": {
            "overrides": {"training.train_fraction": 0.5},
            "test_accuracy": 0.91,
            "sd": 0.03,
        },
    }
    summary = summarize(variants, rng_seed=3)
    assert summary.variants[3].vs_baseline.significant  # settled: a fix, not confirmed again
    assert not summary.variants[1].vs_baseline.significant
    done = [
        BASELINE_DONE,
        stage(1, "search", {n: p.get("overrides", {}) for n, p in list(variants.items())[1:]}),
    ]
    found = plan(summary, done, max_seeds=10)
    assert found.kind == "confirm"
    assert [v.name for v in found.variants] == ["baseline (confirm)", "dropout 0.5 (confirm)"]
    assert found.variants[1].overrides == {"model.dropout": 0.5}
    assert min(found.seeds) > max(SEEDS) and len(found.seeds) >= 3
    assert len(found.seeds) <= 10 - 3  # max_seeds per config, screening seeds included
    assert "fresh seeds" in found.reason and "alone" in found.reason


def test_without_room_under_max_seeds_an_open_comparison_is_not_confirmed():
    summary = summarize({"baseline": {"sd": 0.005}, "dropout 0.5": OPEN}, rng_seed=3)
    done = [BASELINE_DONE, stage(1, "search", {"dropout 0.5": OPEN["overrides"]})]
    assert plan(summary, done, max_seeds=4) is None


def confirmed_study(gain: float) -> tuple[Summary, list[Stage]]:
    """Search found `dropout 0.5` open; its confirmation on seeds 3..7 shows `gain`."""
    confirm = stage(
        2,
        "confirm",
        {"baseline (confirm)": {}, "dropout 0.5 (confirm)": OPEN["overrides"]},
        [3, 4, 5, 6, 7],
    )
    variants = {
        "baseline": {"sd": 0.005},
        "dropout 0.5": OPEN,
        "baseline (confirm)": {"sd": 0.01},
        "dropout 0.5 (confirm)": {
            "overrides": OPEN["overrides"],
            "test_accuracy": 0.90 + gain,
            "sd": 0.01,
        },
    }
    done = [BASELINE_DONE, stage(1, "search", {"dropout 0.5": OPEN["overrides"]}), confirm]
    return summarize(variants, rng_seed=3), done


def test_the_confirmation_decides_on_its_fresh_seeds_alone():
    summary, done = confirmed_study(gain=0.05)
    found = findings(summary, done, DIGITS.test_samples)
    assert [(f.variant, f.decided_by) for f in found.fixes] == [("dropout 0.5", "confirmation")]
    assert found.fixes[0].gain == pytest.approx(0.05, abs=0.02)
    assert found.repaired == {"model.dropout": 0.5}
    assert plan(summary, done) is None  # one fix: its own runs already measure the repair


def test_a_confirmation_without_a_gain_refutes_the_candidate():
    summary, done = confirmed_study(gain=0.0)
    found = findings(summary, done, DIGITS.test_samples)
    assert found.fixes == [] and found.refuted == ["dropout 0.5"] and found.repaired == {}
    assert plan(summary, done) is None


# Repair


def test_repair_merges_the_fixes_and_the_larger_gain_wins_a_shared_path():
    variants = {
        "baseline": {"test_accuracy": 0.60, "gap": 0.38},
        "dropout 0.5": {"overrides": {"model.dropout": 0.5}, "test_accuracy": 0.75},
        "augmentation": {"overrides": {"augmentation.translation": 0.1}, "test_accuracy": 0.70},
        "dropout 0.3": {"overrides": {"model.dropout": 0.3}, "test_accuracy": 0.66},
    }
    summary = summarize(variants)
    done = [
        BASELINE_DONE,
        stage(1, "search", {n: p["overrides"] for n, p in list(variants.items())[1:]}),
    ]
    found = plan(summary, done)
    assert found.kind == "repair" and found.seeds == SEEDS
    assert [(v.name, v.overrides) for v in found.variants] == [
        ("repaired", {"model.dropout": 0.5, "augmentation.translation": 0.1})
    ]
    assert findings(summary, done, None).dropped == ["dropout 0.3"]
    repaired = stage(2, "repair", {"repaired": found.variants[0].overrides})
    assert plan(summary, [*done, repaired]) is None


# Budget, and nothing trained twice


def test_the_budget_cuts_a_stage_and_the_reason_says_so():
    found = plan(summarize({"baseline": CHANCE}), [BASELINE_DONE], budget=7)
    assert len(found.variants) == 2 and found.runs <= 7
    assert sorted(rates(found)) == pytest.approx([1e-4, 1e-2])  # the most direct are kept
    assert "budget (7 runs left)" in found.reason
    assert plan(summarize({"baseline": CHANCE}), [BASELINE_DONE], budget=2) is None
    assert plan(None, [], budget=0) is None


def test_nothing_already_trained_is_proposed_again():
    tried = {
        "lr x0.1": {"optimizer.learning_rate": 0.0001},
        "lr 1e-05": {"optimizer.learning_rate": 0.01},
    }
    first = stage(0, "baseline", {"baseline": {}, **tried})
    summary = summarize(
        {"baseline": CHANCE, **{n: {"overrides": o, **CHANCE} for n, o in tried.items()}}
    )
    found = plan(summary, [first])
    assert 0.0001 not in rates(found) and 0.01 not in rates(found)
    assert sorted(rates(found)) == pytest.approx([1e-6, 1e-5, 0.1, 1.0])
    assert "lr 1e-05 #2" in [v.name for v in found.variants]  # a new config never reuses a name


def test_a_stage_is_read_back_from_the_drivers_round_document():
    from service.identity import RunSpec

    runs = {
        r.run_id: r
        for r in (RunSpec(config=TrainConfig(), dataset_fingerprint="f", seed=s) for s in (4, 5))
    }
    document = RoundDocument(
        study_id="s-1",
        index=2,
        kind="confirm",
        reason="why",
        variants=[
            Variant(name="baseline (confirm)", factor=None, overrides={}, run_ids=sorted(runs))
        ],
        runs=runs,
    )
    read = Stage.from_round(document)
    assert (read.index, read.kind, read.reason, read.seeds) == (2, "confirm", "why", [4, 5])
    assert read.variants[0].candidate() == ("baseline (confirm)", None, {}, "ablation.strategy")


def test_a_search_stage_expands_through_the_plan_like_a_specs_own_variants():
    from service.plan import expand
    from service.spec import spec_from_data

    spec = spec_from_data({**make_study({"baseline": {}}).spec, "name": "staged"})
    found = plan(summarize({"baseline": CHANCE}), [BASELINE_DONE])
    variants, runs = expand(spec, [v.candidate() for v in found.variants], found.seeds)
    assert [v.name for v in variants] == [v.name for v in found.variants]
    assert len(runs) == len(found.variants) * len(SEEDS)
    baseline_runs, _ = expand(spec, [BASELINE_DONE.variants[0].candidate()], SEEDS)
    assert not set(baseline_runs[0].run_ids) & set(runs)  # nothing the baseline stage trained


def test_a_baseline_that_diverged_in_every_seed_is_repaired_by_the_best_rate_that_trains():
    diverged = {"states": ["diverged"] * 3}
    found = plan(summarize({"baseline": diverged}), [BASELINE_DONE])
    assert found.kind == "search" and {v.factor for v in found.variants} == {"learning_rate"}
    searched = {
        "lr 0.0001": {"overrides": {"optimizer.learning_rate": 0.0001}, "test_accuracy": 0.90},
        "lr 1e-05": {"overrides": {"optimizer.learning_rate": 1e-05}, "test_accuracy": 0.70},
        "lr 0.01": {"overrides": {"optimizer.learning_rate": 0.01}, **diverged},
    }
    done = [BASELINE_DONE, stage(1, "search", {n: p["overrides"] for n, p in searched.items()})]
    summary = summarize({"baseline": diverged, **searched})
    result = findings(summary, done, None)
    assert sorted(f.variant for f in result.fixes) == ["lr 0.0001", "lr 1e-05"]
    assert result.repaired == {"optimizer.learning_rate": 0.0001}
    assert plan(summary, done) is None  # the repaired config is lr 0.0001's: already trained


def test_an_open_comparison_that_a_larger_fix_on_the_same_path_overrules_is_not_confirmed():
    lower, higher = {"optimizer.learning_rate": 0.0001}, {"optimizer.learning_rate": 0.01}
    variants = {
        "baseline": {"sd": 0.005},
        "lr 0.0001": {**OPEN, "overrides": lower},
        "lr 0.01": {"overrides": higher, "test_accuracy": 0.99, "sd": 0.002},
    }
    summary = summarize(variants, rng_seed=3)
    open_one = summary.variants[1].vs_baseline
    assert not open_one.significant and open_one.delta > 0.01
    done = [BASELINE_DONE, stage(1, "search", {"lr 0.0001": lower, "lr 0.01": higher})]
    # lr 0.01 is the repair: confirming lr 0.0001 could not change it
    assert plan(summary, done) is None


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


def _seeds(mean: float, std: float = 0.01, n: int = 5):
    from service.report.variant_models import MetricStats

    return MetricStats(n=n, mean=mean, std=std, ci_low=None, ci_high=None)


def test_a_class_weight_confirmation_is_decided_on_balanced_accuracy_like_its_screening():
    """Weighting the classes costs the majority class some plain accuracy and wins the
    minority's: the confirmation compares balanced accuracy, as the report screened it; a
    change of anything else is still decided on test accuracy."""
    from types import SimpleNamespace

    from service.diagnose.confirm import decide

    def stats(name, plain, balanced):
        return SimpleNamespace(name=name, test_accuracy=_seeds(plain), balanced_accuracy=_seeds(balanced))

    summary = SimpleNamespace(
        alpha=0.05,
        variants=[
            stats("baseline (confirm)", 0.90, 0.60),
            stats("class weight (confirm)", 0.87, 0.80),
            stats("dropout 0.5 (confirm)", 0.87, 0.80),
        ],
    )
    done = Stage(
        index=2, kind="confirm", reason="done", seeds=[3, 4, 5, 6, 7],
        variants=[
            StageVariant(name="baseline (confirm)", factor=None, overrides={}),
            StageVariant(name="class weight (confirm)", factor=None,
                         overrides={"training.class_weight": "balanced"}),
            StageVariant(name="dropout 0.5 (confirm)", factor=None, overrides={"model.dropout": 0.5}),
        ],
    )
    fixes, refuted = decide(summary, done, test_samples=360)
    assert [(f.variant, round(f.gain, 2)) for f in fixes] == [("class weight", 0.20)]
    assert refuted == ["dropout 0.5"]  # 3 points of plain accuracy lost: no fix

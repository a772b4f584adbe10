"""service.diagnose after the search: an open comparison is confirmed on fresh seeds, alone, and
decided on them (on balanced accuracy for class weighting); a confirmation without a gain refutes
its candidate; the fixes merge into one repair, the larger gain winning a shared path, and a
repair already trained ends the diagnosis."""

from __future__ import annotations

import pytest

from service.diagnose import Stage, StageVariant, findings
from service.report.models import Summary
from tests.diagnose_planning import BASELINE_DONE, DIGITS, SEEDS, plan, stage, summarize

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

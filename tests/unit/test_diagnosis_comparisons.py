"""service.report.diagnosis, comparisons: a change that helps names the cause it repairs; a
change that hurts, noise, a gain under a point and a variant that changes the data are never a
cause; an undecided comparison says what its seeds cannot tell; two fixes combine into the next
study."""

from __future__ import annotations

import pytest
import yaml

from service.report.summary import summarize_with_files
from tests.diagnosis_cases import HIGHER_RATE, LOWER_RATE, causes, summarize
from tests.planted_study import clean_facts, make_study

NOISE = {
    "dropout 0.2": {"overrides": {"model.dropout": 0.2}},
    "l2 1e-4": {"overrides": {"model.l2": 0.0001}},
    "batch size 64": {"overrides": {"training.batch_size": 64}},
}


# A healthy baseline: nothing to fix


@pytest.mark.parametrize("rng_seed", range(12))
def test_a_healthy_baseline_with_noise_only_variants_gets_nothing_to_fix(rng_seed):
    summary = summarize(
        {"baseline": {"test_accuracy": 0.97, "sd": 0.004}, **NOISE}, rng_seed=rng_seed
    )
    assert summary.causes == [] and summary.symptoms == []
    assert summary.verdict.startswith("Nothing to fix found")
    assert summary.next_steps.actions == ["Nothing to fix: keep the baseline."]
    assert summary.next_steps.next_study is None


def test_noise_is_called_significant_about_as_often_as_alpha():
    false_positives = 0
    for rng_seed in range(100):
        summary = summarize({"baseline": {}, "dropout": NOISE["dropout 0.2"]}, rng_seed=rng_seed)
        false_positives += summary.variants[1].vs_baseline.significant
    assert false_positives <= 12  # alpha 0.05: 5 expected, 12 is beyond the binomial's 99.9%


def test_a_change_away_from_a_good_baseline_that_hurts_is_never_a_cause():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.96},
            "lr x0.1": {"overrides": LOWER_RATE, "test_accuracy": 0.56},
            "no dropout": {"overrides": {"model.dropout": 0.0}, "test_accuracy": 0.93},
        },
        seeds=3,
    )
    assert summary.causes == []
    assert [f.variants[1] for f in summary.strengths] == ["lr x0.1"]
    assert summary.strengths[0].kind == "hurts" and "hurts: -39" in summary.strengths[0].title
    assert summary.verdict.startswith("Nothing to fix found")


# Significance of identical seeds: the binomial floor


def test_identical_seeds_with_a_large_difference_are_decided_by_the_binomial_floor():
    summary = summarize(
        {
            "baseline": {"sd": 0.0},
            "wide": {"overrides": {"model.dense.0": 256}, "test_accuracy": 0.97, "sd": 0.0},
        },
        seeds=3,
    )
    comparison = summary.variants[1].vs_baseline
    assert comparison.binomial_floor and comparison.significant and comparison.p_value < 0.01
    assert comparison.ci_low > 0.0 and comparison.ci_high < 0.14


def test_identical_small_differences_stay_undecided_under_the_binomial_floor():
    summary = summarize(
        {
            "baseline": {"sd": 0.0},
            "gelu": {
                "overrides": {"model.dense_activation": "gelu"},
                "test_accuracy": 0.905,
                "sd": 0.0,
            },
        },
        seeds=3,
    )
    assert not summary.variants[1].vs_baseline.significant and summary.causes == []


# Fixes: which cause a change that helps repairs


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        (LOWER_RATE, "learning_rate_too_high"),
        ({"schedule": {"name": "cosine"}}, "learning_rate_too_high"),
        (HIGHER_RATE, "learning_rate_too_low"),
        ({"training.epochs": 20}, "too_few_epochs"),
        ({"training.batch_size": 8}, "few_updates"),
        ({"model.dense": [256]}, "underfitting"),
        ({"model.dropout": 0.5}, "overfitting"),
        ({"augmentation.horizontal_flip": False}, "harmful_augmentation"),
        ({"model.l2": 0.0}, "over_regularization"),
        ({"model.dense_activation": "gelu"}, "factor_effect"),
    ],
)
def test_a_change_that_helps_names_the_cause_it_repairs(overrides, rule):
    base = make_study({"baseline": {}}).spec
    base = {**{k: base[k] for k in ("dataset", "model", "optimizer", "training")}}
    base["model"] = {**base["model"], "l2": 0.001}
    base["augmentation"] = {"horizontal_flip": True}
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.90, "gap": 0.05},
            "fix": {"overrides": overrides, "test_accuracy": 0.97},
        },
        base=base,
    )
    assert causes(summary) == [rule]
    cause = summary.causes[0]
    assert cause.fix.delta == pytest.approx(0.07, abs=0.01) and cause.fix.spec
    assert summary.verdict.startswith(cause.title)


def test_a_significant_gain_below_a_point_is_noted_not_claimed():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.97, "sd": 0.001},
            "wide": {"overrides": {"model.dense": [256]}, "test_accuracy": 0.976, "sd": 0.001},
        },
        seeds=40,
    )
    assert summary.variants[1].vs_baseline.significant and summary.causes == []
    assert any("below the 1-point gain" in note for note in summary.notes)


def test_a_variant_that_changes_the_data_is_never_claimed():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.9, "gap": 0.04},
            "less test": {"overrides": {"dataset.test_split": 0.5}, "test_accuracy": 0.95},
        }
    )
    assert summary.causes == [] and len(summary.not_comparable) == 1
    assert "different test set" in summary.not_comparable[0]


def test_rescaling_the_inputs_is_a_fair_comparison():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.5},
            "scaled": {"overrides": {"dataset.scale": "standardize"}, "test_accuracy": 0.95},
        },
        dataset=clean_facts(scale="none", raw_max=255.0),
    )
    assert causes(summary)[0] == "unscaled_input" and summary.not_comparable == []


# What the seeds cannot tell


def test_an_undecided_comparison_says_what_its_interval_rules_out_and_needs_more_seeds_than_now():
    summary = summarize(
        {
            "baseline": {},
            "gelu": {
                "overrides": {"model.dense_activation": "gelu"},
                "test_accuracy": 0.92,
                "sd": 0.02,
            },
        },
        seeds=3,
    )
    item = summary.inconclusive[0]
    assert "no gain larger than" in item.statement and "no loss larger than" in item.statement
    assert item.seeds_needed is None or item.seeds_needed > 3 or "edge" in item.statement


def test_a_small_study_says_up_front_it_cannot_see_small_effects():
    summary = summarize({"baseline": {"sd": 0.02}, **NOISE}, seeds=2)
    assert summary.statistics.underpowered and "too small" in summary.statistics.statement
    assert summary.statistics.procedure == "Benjamini-Hochberg"


def test_one_seed_per_variant_asks_for_more_seeds():
    summary = summarize(
        {
            "baseline": {},
            "gelu": {"overrides": {"model.dense_activation": "gelu"}, "test_accuracy": 0.95},
        },
        seeds=1,
    )
    assert summary.causes == [] and "at least 3 seeds" in summary.inconclusive[0].statement


def test_accuracy_intervals_stay_inside_zero_and_one_with_two_seeds():
    summary = summarize({"baseline": {"test_accuracy": 0.99, "sd": 0.03}}, seeds=2, rng_seed=3)
    accuracy = summary.variants[0].test_accuracy
    assert 0.0 <= accuracy.ci_low <= accuracy.mean <= accuracy.ci_high <= 1.0


# Next steps


def test_two_fixes_combine_into_an_untested_recommendation_and_a_confirming_next_study():
    summary, files = summarize_with_files(
        make_study(
            {
                "baseline": {"test_accuracy": 0.70, "gap": 0.02},
                "lr x0.1": {"overrides": LOWER_RATE, "test_accuracy": 0.85},
                "wide": {"overrides": {"model.dense": [256]}, "test_accuracy": 0.78},
            },
            dataset=clean_facts(),
        ),
        generated_at="t",
    )
    steps = summary.next_steps
    assert steps.untested and steps.combined_from == ["lr x0.1", "wide"]
    assert steps.recommended == {"optimizer.learning_rate": 0.0001, "model.dense.0": 256}
    recommended = yaml.safe_load(steps.recommended_spec)
    assert recommended["optimizer"]["learning_rate"] == 0.0001 and recommended["model"][
        "dense"
    ] == [256]
    spec = yaml.safe_load(files["next-study.yaml"])
    assert spec["optimizer"]["learning_rate"] == 0.0001
    assert any(f["name"] == "original baseline" for f in spec["ablation"]["factors"])

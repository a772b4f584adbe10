"""service.report.diagnosis: each rule fires on its planted case and stays silent on a clean one;
real effects rank first, noise is never called significant but reported as inconclusive."""

from __future__ import annotations

import pytest

from service.report.models import Summary
from service.report.summary import summarize_study
from tests.planted_study import BASE, clean_facts, make_study


def summarize(variants: dict, **options) -> Summary:
    return summarize_study(
        make_study(variants, **options), generated_at="2024-05-01T12:00:00+00:00"
    )


def rules(summary: Summary) -> list[str]:
    return [finding.rule for finding in summary.findings]


def only(summary: Summary, rule: str):
    found = [f for f in summary.findings if f.rule == rule]
    assert len(found) == 1, rules(summary)
    return found[0]


LOWER_RATE = {"optimizer.learning_rate": 0.0003}
NOISE = {
    "dropout 0.2": {"overrides": {"model.dropout": 0.2}},
    "l2 1e-4": {"overrides": {"model.l2": 0.0001}},
    "batch size 64": {"overrides": {"training.batch_size": 64}},
}
NOISE_SEEDS = [2, 3, 4, 5, 7, 8, 9, 11, 12, 14, 16, 18, 19, 22, 23, 24, 25, 26, 27, 29]
"""Fixtures whose noise-only variants all land inside the noise (about 5% of draws would not,
see the calibration test below) and whose observed deltas need at most MAX_SEEDS seeds."""


# Ranking and significance


def test_a_clearly_better_variant_ranks_first_with_a_small_p_value():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.90, "sd": 0.005},
            **NOISE,
            "batch norm": {
                "overrides": {"model.conv_blocks.0.batch_norm": True},
                "test_accuracy": 0.95,
                "sd": 0.005,
            },
        },
        seeds=5,
    )
    first = summary.findings[0]
    assert "batch norm" in first.variants and first.kind == "helps"
    assert first.evidence["p_value"] < 0.05 and first.evidence["delta"] == pytest.approx(
        0.05, abs=0.01
    )
    variant = next(v for v in summary.variants if v.name == "batch norm")
    assert variant.vs_baseline.significant and variant.vs_baseline.p_value < 0.05
    assert set(first.run_ids) == set(variant.run_ids) | set(summary.variants[0].run_ids)


@pytest.mark.parametrize("rng_seed", NOISE_SEEDS)
def test_noise_only_variants_are_not_significant_and_say_how_many_seeds_would_tell(rng_seed):
    summary = summarize({"baseline": {}, **NOISE}, rng_seed=rng_seed)
    assert summary.findings == []
    assert not any(v.vs_baseline.significant for v in summary.variants[1:])
    assert sorted(item.variant for item in summary.inconclusive) == sorted(NOISE)
    for item in summary.inconclusive:
        assert item.seeds_needed is not None and item.seeds_needed > 5
        assert f"about {item.seeds_needed} seeds" in item.statement


def test_noise_is_called_significant_about_as_often_as_alpha():
    false_positives = 0
    for rng_seed in range(100):
        summary = summarize({"baseline": {}, "dropout": NOISE["dropout 0.2"]}, rng_seed=rng_seed)
        false_positives += summary.variants[1].vs_baseline.significant
    assert false_positives <= 10  # alpha = 0.05: about 5 of 100


def test_findings_are_ranked_by_magnitude_with_data_problems_interleaved():
    summary = summarize(
        {
            "baseline": {},
            "batch norm": {
                "overrides": {"model.conv_blocks.0.batch_norm": True},
                "test_accuracy": 0.96,
            },
            "flip": {"overrides": {"augmentation.horizontal_flip": True}, "test_accuracy": 0.885},
        },
        dataset=clean_facts(train_test_duplicates=11),
    )
    assert rules(summary) == ["factor_effect", "train_test_leak", "harmful_augmentation"]
    magnitudes = [f.magnitude for f in summary.findings]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for finding in summary.findings:
        assert finding.evidence and finding.variants and finding.run_ids


# Learning rate too high


def test_learning_rate_too_high_fires_when_a_lower_rate_is_significantly_better():
    summary = summarize(
        {
            "baseline": {"loss": "oscillating"},
            "lr x0.3": {"overrides": LOWER_RATE, "test_accuracy": 0.94},
        }
    )
    finding = only(summary, "learning_rate_too_high")
    assert finding.variants == ["baseline", "lr x0.3"] and finding.kind == "helps"
    assert finding.evidence["p_value"] < 0.05 and finding.evidence["baseline_oscillating"] == 5
    assert "oscillates" in finding.statement


def test_learning_rate_too_high_fires_for_a_decaying_schedule_at_the_same_rate():
    summary = summarize(
        {
            "baseline": {},
            "cosine": {"overrides": {"schedule": {"name": "cosine"}}, "test_accuracy": 0.93},
        }
    )
    assert "late in training" in only(summary, "learning_rate_too_high").title


def test_learning_rate_too_high_fires_when_every_baseline_seed_diverges():
    summary = summarize(
        {
            "baseline": {"states": ["diverged"] * 3},
            "lr x0.3": {"overrides": LOWER_RATE, "states": ["succeeded"] * 3},
        },
        seeds=3,
    )
    finding = summary.findings[0]
    assert finding.rule == "learning_rate_too_high" and finding.magnitude == 1.0
    assert finding.evidence["trains_with"] == ["lr x0.3"]


def test_learning_rate_too_high_is_silent_when_a_lower_rate_changes_nothing():
    summary = summarize({"baseline": {}, "lr x0.3": {"overrides": LOWER_RATE}})
    assert summary.findings == []
    assert [item.variant for item in summary.inconclusive] == ["lr x0.3"]


def test_oscillating_loss_alone_is_not_a_finding():
    summary = summarize({"baseline": {"loss": "oscillating"}, "lr x0.3": {"overrides": LOWER_RATE}})
    assert "learning_rate_too_high" not in rules(summary)


# Learning rate too low / too few epochs


def test_learning_rate_too_low_fires_while_validation_accuracy_still_rises():
    finding = only(summarize({"baseline": {"curve": "rising"}}), "learning_rate_too_low")
    assert finding.kind == "training" and finding.evidence["val_accuracy_slope"] > 0.005
    assert finding.evidence["slope_p_value"] < 0.05


def test_learning_rate_too_low_fires_when_more_epochs_are_significantly_better():
    summary = summarize(
        {
            "baseline": {},
            "double epochs": {"overrides": {"training.epochs": 20}, "test_accuracy": 0.93},
        }
    )
    finding = only(summary, "learning_rate_too_low")
    assert finding.title.startswith("Too few epochs") and finding.kind == "helps"


def test_learning_rate_too_low_fires_when_a_higher_rate_is_significantly_better():
    summary = summarize(
        {
            "baseline": {},
            "lr x3": {"overrides": {"optimizer.learning_rate": 0.003}, "test_accuracy": 0.93},
        }
    )
    assert only(summary, "learning_rate_too_low").title.startswith("Learning rate too low")


def test_learning_rate_too_low_is_silent_on_a_plateau_or_after_early_stopping():
    plateau = summarize({"baseline": {}, "double epochs": {"overrides": {"training.epochs": 20}}})
    assert "learning_rate_too_low" not in rules(plateau)
    stopped = summarize({"baseline": {"curve": "rising", "stopped_early": True}})
    assert "learning_rate_too_low" not in rules(stopped)


# Overfitting


def test_overfitting_fires_when_regularization_shrinks_the_gap_and_raises_accuracy():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.85, "gap": 0.14},
            "dropout 0.5": {
                "overrides": {"model.dropout": 0.5},
                "test_accuracy": 0.88,
                "gap": 0.03,
            },
        }
    )
    finding = only(summary, "overfitting")
    assert finding.kind == "helps" and finding.variants == ["baseline", "dropout 0.5"]
    assert finding.evidence["baseline_gap"] > 0.1 and finding.evidence["variant_gap"] < 0.05


def test_overfitting_fires_at_lower_rank_when_removing_regularization_hurts():
    base = {**BASE, "model": {**BASE["model"], "dropout": 0.5}}
    summary = summarize(
        {
            "baseline": {"gap": 0.03},
            "no dropout": {"overrides": {"model.dropout": 0.0}, "test_accuracy": 0.87, "gap": 0.12},
        },
        base=base,
    )
    finding = only(summary, "overfitting")
    assert finding.kind == "hurts"
    assert finding.magnitude == pytest.approx(0.5 * abs(finding.evidence["delta"]))


def test_overfitting_fires_on_a_significant_gap_alone():
    finding = only(summarize({"baseline": {"test_accuracy": 0.8, "gap": 0.15}}), "overfitting")
    assert finding.kind == "training" and finding.evidence["gap_p_value"] < 0.05


def test_overfitting_is_silent_with_a_small_gap_and_no_regularization_effect():
    summary = summarize(
        {"baseline": {"gap": 0.02}, "dropout 0.5": {"overrides": {"model.dropout": 0.5}}}
    )
    assert summary.findings == []


# Underfitting


WIDER = {"model.conv_blocks.0.filters": 32, "model.conv_blocks.1.filters": 64, "model.dense": [128]}


def test_underfitting_fires_when_training_accuracy_is_low_and_a_wider_model_is_better():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.72, "gap": -0.01},
            "double width": {"overrides": WIDER, "test_accuracy": 0.78},
        }
    )
    finding = only(summary, "underfitting")
    assert finding.evidence["baseline_train_accuracy"] < 0.9
    assert "double width" in finding.variants


def test_underfitting_is_silent_when_the_baseline_fits_its_training_data():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.90, "gap": 0.05},
            "double width": {"overrides": WIDER, "test_accuracy": 0.93},
        }
    )
    assert "underfitting" not in rules(summary)
    assert only(summary, "factor_effect").variants == ["baseline", "double width"]


def test_underfitting_needs_a_bigger_model_that_helps():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.72, "gap": -0.01},
            "double width": {"overrides": WIDER, "test_accuracy": 0.72, "gap": -0.01},
        }
    )
    assert "underfitting" not in rules(summary)


# Harmful augmentation


def test_harmful_augmentation_fires_when_adding_a_flip_lowers_accuracy():
    summary = summarize(
        {
            "baseline": {},
            "flip": {"overrides": {"augmentation.horizontal_flip": True}, "test_accuracy": 0.88},
        }
    )
    finding = only(summary, "harmful_augmentation")
    assert finding.evidence["augmentations"] == ["horizontal_flip"]
    assert finding.statement.startswith("horizontal_flip lowers test accuracy by")
    assert finding.evidence["p_value"] < 0.05


def test_harmful_augmentation_fires_when_removing_the_baselines_augmentation_helps():
    base = {**BASE, "augmentation": {"vertical_flip": True}}
    summary = summarize(
        {
            "baseline": {},
            "no augmentation": {"overrides": {"augmentation": {}}, "test_accuracy": 0.93},
        },
        base=base,
    )
    finding = only(summary, "harmful_augmentation")
    assert finding.evidence["augmentations"] == ["vertical_flip"]
    assert finding.evidence["delta_with_augmentation"] < 0


def test_harmful_augmentation_is_silent_when_the_flip_changes_nothing():
    summary = summarize(
        {"baseline": {}, "flip": {"overrides": {"augmentation.horizontal_flip": True}}}
    )
    assert summary.findings == [] and summary.inconclusive[0].variant == "flip"


# Other factors


def test_factor_effect_names_any_other_significant_change():
    summary = summarize(
        {
            "baseline": {},
            "gelu": {"overrides": {"model.dense_activation": "gelu"}, "test_accuracy": 0.87},
        }
    )
    finding = only(summary, "factor_effect")
    assert finding.kind == "hurts" and "model.dense_activation" in finding.statement


def test_a_variant_that_always_diverges_is_a_low_ranked_finding():
    summary = summarize(
        {
            "baseline": {},
            "lr x30": {"overrides": {"optimizer.learning_rate": 0.03}, "states": ["diverged"] * 5},
        }
    )
    finding = only(summary, "factor_effect")
    assert finding.title == "lr x30 diverges" and finding.magnitude < 0.01


def test_factor_effect_is_silent_on_noise():
    summary = summarize({"baseline": {}, "gelu": {"overrides": {"model.dense_activation": "gelu"}}})
    assert summary.findings == []


def test_one_seed_per_variant_is_inconclusive_and_asks_for_more_seeds():
    summary = summarize(
        {
            "baseline": {},
            "gelu": {"overrides": {"model.dense_activation": "gelu"}, "test_accuracy": 0.95},
        },
        seeds=1,
    )
    assert summary.findings == []
    item = summary.inconclusive[0]
    assert (
        item.p_value is None and item.seeds_needed is None and "at least 3 seeds" in item.statement
    )


def test_identical_seeds_on_both_sides_are_inconclusive_and_say_why():
    summary = summarize(
        {
            "baseline": {"sd": 0.0},
            "gelu": {
                "overrides": {"model.dense_activation": "gelu"},
                "test_accuracy": 0.95,
                "sd": 0.0,
            },
        }
    )
    assert summary.findings == []
    item = summary.inconclusive[0]
    assert item.delta == pytest.approx(0.05) and item.p_value is None and item.seeds_needed is None
    assert "same test accuracy" in item.statement


# Data problems


@pytest.mark.parametrize(
    ("rule", "facts"),
    [
        ("class_imbalance", {"train_class_counts": [300] * 9 + [90]}),
        ("few_samples", {"train_class_counts": [130] * 9 + [30]}),
        ("unscaled_input", {"scale": "none", "raw_max": 255.0}),
        ("unscaled_input", {"scale": "unit", "raw_max": 1.0}),
        ("train_test_leak", {"train_test_duplicates": 7}),
    ],
)
def test_data_rules_fire_on_their_planted_problem(rule, facts):
    summary = summarize({"baseline": {}}, dataset=clean_facts(**facts))
    finding = only(summary, rule)
    assert finding.kind == "data" and finding.evidence and finding.run_ids


def test_data_rules_are_silent_on_clean_data_or_without_facts():
    assert summarize({"baseline": {}}, dataset=clean_facts()).findings == []
    assert summarize({"baseline": {}}, dataset=None).findings == []
    # just under every threshold
    near = clean_facts(train_class_counts=[140] * 9 + [50], scale="none", raw_max=1.0)
    assert summarize({"baseline": {}}, dataset=near).findings == []

"""service.report.diagnosis: a cause is claimed only from a fix that helps or a symptom of the
baseline; each rule fires on its planted case and stays silent on its nearest healthy one; a
change that hurts is never a cause; noise is never called significant."""

from __future__ import annotations

import pytest
import yaml

from service.report.models import Summary
from service.report.summary import summarize_study, summarize_with_files
from tests.planted_study import clean_facts, make_study


def summarize(variants: dict, **options) -> Summary:
    options.setdefault("dataset", clean_facts())
    return summarize_study(
        make_study(variants, **options), generated_at="2024-05-01T12:00:00+00:00"
    )


def causes(summary: Summary) -> list[str]:
    return [cause.rule for cause in summary.causes]


def symptoms(summary: Summary) -> list[str]:
    return [s.rule for s in summary.symptoms]


LOWER_RATE = {"optimizer.learning_rate": 0.0001}
HIGHER_RATE = {"optimizer.learning_rate": 0.01}
NOISE = {
    "dropout 0.2": {"overrides": {"model.dropout": 0.2}},
    "l2 1e-4": {"overrides": {"model.l2": 0.0001}},
    "batch size 64": {"overrides": {"training.batch_size": 64}},
}
CHANCE = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.0, "gap_sd": 0.0}
"""A baseline at chance on 10 classes: every seed identical, training at chance too."""


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


# Learned nothing, diverged


def test_a_chance_level_baseline_learned_nothing_and_the_next_study_searches_the_learning_rate():
    summary, files = summarize_with_files(
        make_study(
            {
                "baseline": CHANCE,
                "lr x3": {"overrides": {"optimizer.learning_rate": 0.003}, **CHANCE},
            },
            seeds=3,
            dataset=clean_facts(),
        ),
        generated_at="t",
    )
    assert causes(summary) == ["learned_nothing"] and "learned nothing" in summary.verdict.lower()
    top = summary.causes[0]
    assert top.basis == "symptom" and top.gain > 0.8
    rates = sorted(fix.changes["optimizer.learning_rate"] for fix in top.try_next)
    assert rates[0] <= 1e-5 and rates[-1] >= 0.03  # decades both ways beyond what was tried
    spec = yaml.safe_load(files["next-study.yaml"])
    from service.spec import spec_from_data

    next_spec = spec_from_data(spec)
    assert next_spec.ablation.factors and len(next_spec.ablation.seed_list) >= 3
    assert (
        min(next_spec.ablation.seed_list) >= 3
    )  # fresh seeds: the next study confirms on new runs


def test_a_chance_level_baseline_repaired_by_a_lower_rate_is_a_rate_too_high_with_its_symptom():
    summary = summarize(
        {"baseline": CHANCE, "lr x0.1": {"overrides": LOWER_RATE, "test_accuracy": 0.9}}, seeds=3
    )
    top = summary.causes[0]
    assert top.rule == "learning_rate_too_high" and top.basis == "fix and symptom"
    assert top.symptoms == ["learned_nothing"] and top.fix.variant == "lr x0.1"
    assert yaml.safe_load(top.fix.spec) == {"optimizer": {"learning_rate": 0.0001}}
    assert top.fix.ci_low > 0.7 and top.fix.ci_high <= 1.0


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


def test_every_seed_diverging_is_a_learning_rate_too_high_even_without_a_fix():
    summary = summarize({"baseline": {"states": ["diverged"] * 3}}, seeds=3)
    assert causes(summary) == ["learning_rate_too_high"]
    assert summary.causes[0].symptoms == ["diverged"] and summary.causes[0].try_next


def test_unscaled_input_explains_a_baseline_that_learned_nothing():
    base = make_study({"baseline": {}}).spec
    base = {k: base[k] for k in ("dataset", "model", "optimizer", "training")}
    base["dataset"] = {**base["dataset"], "scale": "none"}
    summary = summarize(
        {"baseline": CHANCE}, seeds=3, base=base, dataset=clean_facts(scale="none", raw_max=4095.0)
    )
    assert causes(summary)[0] == "unscaled_input"
    assert yaml.safe_load(summary.causes[0].try_next[0].spec) == {"dataset": {"scale": "auto"}}


def test_unscaled_input_on_a_baseline_that_trains_well_is_a_fact_not_a_cause():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.97}}, dataset=clean_facts(scale="none", raw_max=16.0)
    )
    assert summary.causes == [] and [f.rule for f in summary.facts] == ["unscaled_input"]


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


# Symptoms of the baseline's own runs


def test_underfitting_is_called_without_a_bigger_model_and_suggests_one():
    summary = summarize({"baseline": {"test_accuracy": 0.48, "gap": 0.02}}, seeds=3)
    assert causes(summary) == ["underfitting"]
    assert any(
        "model" in fix.changes or "model.conv_blocks" in fix.changes
        for fix in summary.causes[0].try_next
    )


def test_underfitting_is_not_claimed_when_bigger_and_longer_runs_rule_out_a_gain():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.80, "sd": 0.002},
            "double width": {
                "overrides": {"model.dense": [128]},
                "test_accuracy": 0.80,
                "sd": 0.002,
            },
            "double epochs": {
                "overrides": {"training.epochs": 20},
                "test_accuracy": 0.80,
                "sd": 0.002,
            },
        },
        seeds=5,
        dataset=clean_facts(),
    )
    assert summary.causes == []
    assert summary.symptoms[0].rule == "underfitting" and summary.symptoms[0].refuted_by


def test_an_overfit_baseline_with_a_tiny_validation_split_is_named_from_train_minus_test():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.55, "val_offset": 0.40, "gap": 0.03, "sd": 0.01}},
        seeds=3,
        dataset=clean_facts(validation_size=18),
    )
    assert causes(summary)[0] == "overfitting"
    symptom = next(s for s in summary.symptoms if s.rule == "overfitting")
    assert symptom.evidence["measured_against"] == "test" and "18 samples" in symptom.statement
    assert symptom.evidence["gap"] > 0.4


def test_regularization_that_closes_the_gap_is_the_overfitting_fix():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.60, "gap": 0.38},
            "augmentation": {
                "overrides": {"augmentation.translation": 0.1},
                "test_accuracy": 0.87,
                "gap": 0.09,
            },
        },
        seeds=3,
    )
    top = summary.causes[0]
    assert top.rule == "overfitting" and top.basis == "fix and symptom"
    assert "regularization raises" not in top.statement and top.fix.variant == "augmentation"


def test_a_small_gap_is_not_overfitting():
    summary = summarize({"baseline": {"test_accuracy": 0.95, "gap": 0.03}})
    assert "overfitting" not in symptoms(summary)


def test_still_improving_asks_for_more_epochs_and_a_tested_longer_run_refutes_it():
    rising = summarize({"baseline": {"curve": "rising"}})
    assert causes(rising) == ["too_few_epochs"] and rising.causes[0].try_next
    tested = summarize(
        {"baseline": {"curve": "rising"}, "double epochs": {"overrides": {"training.epochs": 20}}},
        seeds=8,
    )
    assert "too_few_epochs" not in causes(tested)
    assert next(s for s in tested.symptoms if s.rule == "still_improving").refuted_by


def test_still_improving_is_silent_on_a_plateau_or_after_early_stopping():
    assert summarize({"baseline": {}}).causes == []
    assert summarize({"baseline": {"curve": "rising", "stopped_early": True}}).causes == []


def test_very_few_optimizer_updates_are_called_with_a_smaller_batch_to_try():
    base = make_study({"baseline": {}}).spec
    base = {k: base[k] for k in ("dataset", "model", "optimizer", "training")}
    base["training"] = {**base["training"], "batch_size": 512, "epochs": 5}
    summary = summarize({"baseline": {"test_accuracy": 0.55, "curve": "rising"}}, base=base)
    assert causes(summary)[0] == "few_updates"
    assert any(
        fix.changes.get("training.batch_size", 512) < 512 for fix in summary.causes[0].try_next
    )


def test_many_updates_on_a_short_run_are_not_few_updates():
    summary = summarize({"baseline": {"test_accuracy": 0.55, "curve": "rising"}})
    assert "few_updates" not in symptoms(summary)


def test_test_accuracy_above_validation_points_to_noisy_labels():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.88, "val_offset": -0.2, "gap": 0.05}}, seeds=3
    )
    assert causes(summary)[0] == "label_noise"
    assert "cleanlab" in summary.causes[0].advice


def test_validation_equal_to_test_is_not_label_noise():
    assert "test_above_validation" not in symptoms(summarize({"baseline": {}}))


def test_a_twenty_fold_imbalance_with_a_collapsed_class_outranks_a_small_hurt_and_help():
    facts = clean_facts(train_class_counts=[400] * 9 + [20])
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.86, "gap": 0.1, "class_recall": {9: 0.0}},
            "lr x3": {"overrides": {"optimizer.learning_rate": 0.003}, "test_accuracy": 0.83},
            "wide": {
                "overrides": {"model.dense": [128]},
                "test_accuracy": 0.875,
                "gap": 0.1,
                "class_recall": {9: 0.0},
            },
        },
        seeds=5,
        dataset=facts,
    )
    assert causes(summary)[0] == "class_imbalance"
    top = summary.causes[0]
    assert top.gain > 0.08 and "rebalance" in top.advice.lower()
    assert summary.causes[0].gain > max((c.gain for c in summary.causes[1:]), default=0)


def test_an_imbalance_the_model_copes_with_is_a_fact_not_a_cause():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.95}},
        dataset=clean_facts(train_class_counts=[600] * 9 + [60]),
    )
    assert summary.causes == [] and [f.rule for f in summary.facts] == ["class_imbalance"]


def test_a_class_never_predicted_on_balanced_data_is_a_class_collapse():
    summary = summarize({"baseline": {"test_accuracy": 0.9, "gap": 0.04, "class_recall": {4: 0.0}}})
    assert causes(summary) == ["class_collapse"]
    assert summary.symptoms[0].evidence["per_class_recall"]["4"] == 0.0


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


# What an engineer reads at a glance when nothing tested repairs the baseline


def _with(section: str, **values) -> dict:
    base = make_study({"baseline": {}}).spec
    base = {k: base[k] for k in ("dataset", "model", "optimizer", "training")}
    base[section] = {**base[section], **values}
    return base


def test_learning_nothing_at_an_absurd_adam_rate_is_a_rate_too_high():
    summary = summarize({"baseline": CHANCE}, seeds=3, base=_with("optimizer", learning_rate=0.5))
    assert causes(summary) == ["learning_rate_too_high"]
    assert summary.causes[0].symptoms == ["learned_nothing"]
    assert all(f.changes["optimizer.learning_rate"] < 0.5 for f in summary.causes[0].try_next)


def test_learning_nothing_at_a_tiny_rate_is_a_rate_too_low():
    summary = summarize({"baseline": CHANCE}, seeds=3, base=_with("optimizer", learning_rate=1e-6))
    assert causes(summary) == ["learning_rate_too_low"]
    assert all(f.changes["optimizer.learning_rate"] > 1e-6 for f in summary.causes[0].try_next)


def test_a_loss_that_falls_slowly_at_chance_accuracy_is_a_rate_too_low():
    crawling = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.07, "gap_sd": 0.0, "curve": "rising"}
    summary = summarize({"baseline": crawling}, seeds=3)
    assert causes(summary) == ["learning_rate_too_low"]
    assert summary.symptoms[0].evidence["loss_falling_slowly"] is True


def test_a_flat_loss_at_chance_with_a_sane_rate_stays_learned_nothing():
    summary = summarize({"baseline": CHANCE}, seeds=3)
    assert causes(summary) == ["learned_nothing"]


def test_a_network_that_predicts_the_majority_class_of_imbalanced_data_is_class_imbalance():
    facts = clean_facts(train_class_counts=[1000] + [20] * 9)
    summary = summarize(
        {"baseline": {**CHANCE, "class_recall": {0: 1.0}, "wrong_as": 0}}, seeds=3, dataset=facts
    )
    assert causes(summary)[0] == "class_imbalance"
    assert summary.causes[0].symptoms[0] == "learned_nothing"


def test_a_network_at_chance_on_imbalanced_data_that_predicts_every_class_is_learned_nothing():
    facts = clean_facts(train_class_counts=[1000] + [20] * 9)
    summary = summarize({"baseline": CHANCE}, seeds=3, dataset=facts)
    assert causes(summary)[0] == "learned_nothing"


def test_a_moderate_gap_alone_is_a_symptom_not_a_cause():
    # a gap of 8 points on a 2000-image validation split: real, but only 1.5 points at stake
    facts = clean_facts(validation_size=2000)
    summary = summarize(
        {"baseline": {"test_accuracy": 0.92, "gap": 0.08, "sd": 0.003}}, seeds=10, dataset=facts
    )
    assert "overfitting" in symptoms(summary) and summary.causes == []


def test_a_gap_measured_on_a_small_shared_split_is_not_significant_from_many_seeds_alone():
    """Every seed is scored on the same 144 validation images: their noise does not average out
    over seeds, so ten seeds do not make a 3-point excess over the threshold significant."""
    summary = summarize({"baseline": {"test_accuracy": 0.92, "gap": 0.08, "sd": 0.003}}, seeds=10)
    assert "overfitting" not in symptoms(summary)


def test_an_augmentation_that_makes_the_model_underfit_is_the_harmful_augmentation():
    base = _with("training")
    base["augmentation"] = {"vertical_flip": True, "rotation": 0.5}
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.60, "gap": -0.05},
            "no augmentation": {"overrides": {"augmentation": {}}, "test_accuracy": 0.95},
        },
        base=base,
    )
    assert causes(summary) == ["harmful_augmentation"]
    assert summary.causes[0].symptoms == ["underfitting"]


def test_unscaled_input_with_an_oscillating_loss_is_the_cause_even_above_90_percent_training():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.89, "gap": 0.02, "loss": "oscillating"}},
        dataset=clean_facts(scale="none", raw_max=4000.0),
    )
    assert causes(summary) == ["unscaled_input"] and summary.causes[0].gain > 0.05


def test_a_promising_fix_not_yet_significant_names_the_cause_of_a_symptom_and_asks_to_confirm():
    base = _with("model", dropout=0.9)
    summary = summarize(
        {
            "baseline": {**CHANCE, "sd": 0.0},
            "no dropout": {"overrides": {"model.dropout": 0.0}, "test_accuracy": 0.6, "sd": 0.25},
            **{
                f"noise {i}": {"overrides": {"model.dense.0": 64 + i}, **CHANCE}
                for i in range(1, 9)
            },
        },
        seeds=3,
        base=base,
        rng_seed=1,
    )
    comparison = summary.variants[1].vs_baseline
    assert comparison.p_value < 0.05 and not comparison.significant
    top = summary.causes[0]
    assert top.rule == "over_regularization" and top.fix is None
    assert top.try_next[0].variant == "no dropout" and not top.try_next[0].confirmed
    assert "to confirm" in top.title and summary.next_steps.recommended == {}


def test_a_promising_change_alone_is_never_a_cause():
    summary = summarize(
        {
            "baseline": {"test_accuracy": 0.95, "sd": 0.0},
            "gelu": {
                "overrides": {"model.dense_activation": "gelu"},
                "test_accuracy": 0.985,
                "sd": 0.01,
            },
            **{
                f"noise {i}": {"overrides": {"model.dense.0": 64 + i}, "test_accuracy": 0.95}
                for i in range(1, 9)
            },
        },
        seeds=3,
    )
    assert summary.causes == []


def test_inputs_in_the_thousands_are_the_cause_when_the_model_does_not_fit_its_training_set():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.88, "gap": 0.03}},
        dataset=clean_facts(scale="none", raw_max=4000.0),
    )
    assert causes(summary) == ["unscaled_input"] and summary.causes[0].gain > 0.05


def test_inputs_in_the_thousands_on_a_model_that_fits_them_are_a_fact():
    summary = summarize(
        {"baseline": {"test_accuracy": 0.97, "gap": 0.025}},
        dataset=clean_facts(scale="none", raw_max=4000.0),
    )
    assert summary.causes == [] and [f.rule for f in summary.facts] == ["unscaled_input"]

"""service.report.diagnosis, symptoms of the baseline's own runs: each rule (learned nothing,
diverged, unscaled input, underfitting, overfitting, still improving, few updates, noisy labels,
class imbalance and collapse) fires on its planted case and stays silent on its nearest healthy
one."""

from __future__ import annotations

import yaml

from service.report.summary import summarize_with_files
from tests.diagnosis_cases import CHANCE, LOWER_RATE, causes, summarize, symptoms
from tests.planted_study import clean_facts, make_study

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

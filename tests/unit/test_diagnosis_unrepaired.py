"""service.report.diagnosis when nothing tested repairs the baseline: what an engineer reads at a
glance, a cause named from the baseline's symptoms and its spec (a rate too high or too low, the
majority class, a harmful augmentation, inputs in the thousands), and a promising change that is
not yet significant, which is never a cause on its own."""

from __future__ import annotations

from tests.diagnosis_cases import CHANCE, causes, summarize, symptoms
from tests.planted_study import clean_facts, make_study

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

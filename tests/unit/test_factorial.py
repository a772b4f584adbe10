"""service.report.factorial: a grid read as a factorial design finds a planted main effect with
its sign and size, tells a pure interaction from main effects, does not claim a null factor,
states what missing or unbalanced cells cost, and feeds its main effects to the diagnosis."""

from __future__ import annotations

import pytest

from service.report.factorial import analyse_grid
from service.report.summary import summarize_study
from tests.planted_study import clean_facts, make_grid, make_study

RATE = {"path": "optimizer.learning_rate", "values": [0.001, 0.01, 0.0001]}
DROPOUT = {"path": "model.dropout", "values": [0.0, 0.5]}
WIDTH = {"path": "training.batch_size", "values": [32, 64]}


def rate_effect(levels: tuple[int, ...]) -> float:
    """0.01 costs 5 points, 0.0001 gains 3; dropout and batch size do nothing."""
    return 0.90 + {0: 0.0, 1: -0.05, 2: 0.03}[levels[0]]


def effects(factorial) -> dict[tuple[str, str], object]:
    return {(e.factor, e.level): e for e in factorial.main_effects}


def test_a_planted_main_effect_is_found_with_its_sign_and_size():
    factorial = analyse_grid(make_grid([RATE, DROPOUT], rate_effect))
    assert factorial.model == "two-way" and factorial.notes == []
    found = effects(factorial)
    lower, higher = (
        found["optimizer.learning_rate", "0.0001"],
        found["optimizer.learning_rate", "0.01"],
    )
    assert lower.reference == "0.001" and lower.significant and higher.significant
    assert lower.delta == pytest.approx(0.03, abs=0.005) and lower.ci_low < 0.03 < lower.ci_high
    assert higher.delta == pytest.approx(-0.05, abs=0.005) and higher.ci_high < 0
    rate, dropout = factorial.factors
    assert rate.p_value < 0.001 and rate.eta_squared > 0.9
    assert [level.level for level in rate.levels] == ["0.001", "0.01", "0.0001"]
    assert rate.levels[2].mean == pytest.approx(0.93, abs=0.005) and rate.levels[2].seeds == 8
    assert len(factorial.cells) == 6 and {c.seeds for c in factorial.cells} == {4}


def test_a_null_factor_is_not_claimed():
    factorial = analyse_grid(make_grid([RATE, DROPOUT], rate_effect))
    dropout = effects(factorial)["model.dropout", "0.5"]
    assert not dropout.significant and dropout.ci_low < 0 < dropout.ci_high
    assert abs(dropout.delta) < 0.005 and factorial.factors[1].eta_squared < 0.01


def test_a_pure_interaction_shows_as_an_interaction_not_as_main_effects():
    # Each factor helps only with the other at its baseline level: +4 / -4 points in a checker.
    factorial = analyse_grid(
        make_grid([DROPOUT, WIDTH], lambda lv: 0.90 + (0.04 if lv[0] == lv[1] else -0.04))
    )
    (interaction,) = factorial.interactions
    assert interaction.factors == ["model.dropout", "training.batch_size"]
    assert interaction.significant and interaction.eta_squared > 0.9
    assert not any(e.significant for e in factorial.main_effects)
    assert all(abs(e.delta) < 0.006 for e in factorial.main_effects)


def test_a_missing_cell_falls_back_to_main_effects_and_says_so():
    failed = {(1, 1): ["failed"] * 4}
    factorial = analyse_grid(make_grid([RATE, DROPOUT], rate_effect, states=failed))
    assert factorial.model == "additive" and factorial.interactions == []
    assert any("1 of the grid's 6 cells have no succeeded run" in n for n in factorial.notes)
    assert any("interactions cannot be estimated" in n for n in factorial.notes)
    assert effects(factorial)["optimizer.learning_rate", "0.0001"].significant


def test_an_unbalanced_grid_is_analysed_and_named():
    uneven = {(2, 0): ["succeeded", "succeeded", "failed", "failed"]}
    factorial = analyse_grid(make_grid([RATE, DROPOUT], rate_effect, states=uneven))
    assert factorial.model == "two-way"
    assert any(n.startswith("Unbalanced grid: cells have 2 to 4") for n in factorial.notes)
    assert effects(factorial)["optimizer.learning_rate", "0.0001"].delta == pytest.approx(
        0.03, abs=0.006
    )


def test_a_factor_without_the_baseline_level_says_why_it_has_no_main_effect():
    rates = {"path": "optimizer.learning_rate", "values": [0.01, 0.0001]}
    factorial = analyse_grid(make_grid([rates, DROPOUT], lambda lv: 0.9 + 0.03 * lv[0]))
    assert factorial.factors[0].baseline_level is None
    assert {e.factor for e in factorial.main_effects} == {"model.dropout"}
    assert any(
        "optimizer.learning_rate: the baseline's own setting is not among the grid's levels" in n
        for n in factorial.notes
    )
    assert factorial.factors[0].p_value < 0.001  # the ANOVA still says it matters


def test_a_single_seed_grid_has_no_interaction_and_one_seed_per_level_no_inference():
    single = analyse_grid(make_grid([RATE, DROPOUT], rate_effect, seeds=1))
    assert single.model == "additive" and single.residual_df == 2
    tiny = analyse_grid(make_grid([DROPOUT], lambda lv: 0.9, seeds=1))
    assert tiny.model == "none" and tiny.main_effects == [] and "Too few" in tiny.notes[-1]


def test_a_study_that_is_not_a_grid_has_no_factorial_analysis():
    data = make_study({"baseline": {}, "lr": {"overrides": {"optimizer.learning_rate": 0.01}}})
    assert analyse_grid(data) is None


def test_the_diagnosis_claims_a_helping_main_effect_and_never_a_harmful_one():
    summary = summarize_study(
        make_grid([RATE, DROPOUT], rate_effect, dataset=clean_facts()), generated_at=""
    )
    (cause,) = summary.causes
    assert cause.rule == "learning_rate_too_high"
    assert cause.fix.variant == "optimizer.learning_rate = 0.0001 (main effect)"
    assert cause.fix.changes == {"optimizer.learning_rate": 0.0001}
    assert cause.gain == pytest.approx(0.03, abs=0.005)
    hurts = [f.title for f in summary.strengths]
    assert any(t.startswith("optimizer.learning_rate = 0.01 (main effect) hurts") for t in hurts)
    assert summary.factorial is not None and summary.factorial.model == "two-way"


def test_a_null_grid_gives_nothing_to_fix():
    summary = summarize_study(
        make_grid([DROPOUT, WIDTH], lambda lv: 0.9, dataset=clean_facts()), generated_at=""
    )
    assert summary.causes == [] and summary.verdict.startswith("Nothing to fix found")


def test_a_combination_that_only_helps_together_is_claimed_through_its_interaction():
    # Only dropout 0.5 with batch size 64 gains (5 points): the interaction is the finding.
    summary = summarize_study(
        make_grid([DROPOUT, WIDTH], lambda lv: 0.90 + 0.05 * (lv == (1, 1)), dataset=clean_facts()),
        generated_at="",
    )
    (interaction,) = summary.factorial.interactions
    assert interaction.significant
    top = summary.causes[0]
    assert top.fix.variant == "model.dropout=0.5, training.batch_size=64"
    assert top.gain == pytest.approx(0.05, abs=0.006)

"""A staged diagnosis's confirmation in the report: a variant retrained on fresh seeds
("X (confirm)") is compared with the baseline retrained on the same seeds ("baseline
(confirm)") and judged among its own family (Holm), not with the screening comparisons."""

from __future__ import annotations

import pytest

from service.report.stats import holm
from service.report.summary import CONFIRMATION_NOTE, summarize_study
from tests.planted_study import make_study

WIDER = {"model.dense": [128]}


def study(confirmed_gain: float, retrained_baseline: float = 0.90):
    # Screening: the wider model looks better on 3 seeds but not settled among 8 comparisons.
    variants = {
        "baseline": {"test_accuracy": 0.90, "sd": 0.02},
        "wider": {"overrides": WIDER, "factor": "width", "test_accuracy": 0.925, "sd": 0.02},
        **{
            f"probe {i}": {"overrides": {"optimizer.learning_rate": 0.001 * (i + 2)}, "factor": "lr"}
            for i in range(6)
        },
        "baseline (confirm)": {"test_accuracy": retrained_baseline, "sd": 0.004},
        "wider (confirm)": {
            "overrides": WIDER, "factor": "width", "test_accuracy": retrained_baseline + confirmed_gain, "sd": 0.004,
        },
    }
    return summarize_study(make_study(variants, seeds=3, rng_seed=4), generated_at="")


def by_name(summary, name):
    return next(v for v in summary.variants if v.name == name)


def test_a_confirmed_gain_is_measured_against_the_retrained_baseline_and_claimed():
    summary = study(confirmed_gain=0.04)
    assert not by_name(summary, "wider").vs_baseline.significant  # screening left it open
    confirm = by_name(summary, "wider (confirm)").vs_baseline
    retrained = by_name(summary, "baseline (confirm)")
    assert retrained.vs_baseline is None  # the baseline itself, on other seeds
    expected = by_name(summary, "wider (confirm)").test_accuracy.mean - retrained.test_accuracy.mean
    assert confirm.delta == pytest.approx(expected)
    assert confirm.significant and confirm.p_adjusted == pytest.approx(confirm.p_value)  # a family of one
    assert any("wider (confirm)" in cause.variants for cause in summary.causes)
    assert CONFIRMATION_NOTE in summary.notes


def test_a_confirmation_that_only_beats_an_unlucky_screening_baseline_is_not_claimed():
    # The retrained baseline is as good as the confirmation variant: the screening baseline's
    # low seeds made the change look good, and the fresh seeds show no gain.
    summary = study(confirmed_gain=0.0, retrained_baseline=0.93)
    confirm = by_name(summary, "wider (confirm)").vs_baseline
    assert abs(confirm.delta) < 0.01 and not confirm.significant
    assert not any("wider (confirm)" in cause.variants for cause in summary.causes)


def test_holm_steps_down_and_never_lowers_a_larger_p():
    from service.report.variant_models import Comparison

    def comparison(p):
        return Comparison(delta=0.1, ci_low=0.0, ci_high=0.2, p_value=p, effect_size=1.0, significant=False)

    family = [comparison(p) for p in (0.01, 0.04, 0.03)]
    holm(family, 0.05)
    assert [c.p_adjusted for c in family] == pytest.approx([0.03, 0.06, 0.06])
    assert [c.significant for c in family] == [True, False, False]


def test_a_promising_fix_its_confirmation_did_not_bear_out_is_said_so_not_asked_again():
    # The baseline overfits; dropout looked promising on screening (significant alone, not after
    # the adjustment) and its confirmation on fresh seeds gained too little to be significant:
    # the cause says it was not confirmed, and never again "looks like the fix, to confirm".
    dropout = {"model.dropout": 0.5}
    variants = {
        "baseline": {"test_accuracy": 0.80, "sd": 0.01, "gap": 0.18, "gap_sd": 0.01},
        "dropout 0.5": {"overrides": dropout, "factor": "dropout", "test_accuracy": 0.83, "sd": 0.01, "gap": 0.15},
        **{
            f"probe {i}": {"overrides": {"optimizer.learning_rate": 0.001 * (i + 2)}, "factor": "lr"}
            for i in range(6)
        },
        "baseline (confirm)": {"test_accuracy": 0.80, "sd": 0.03, "gap": 0.18},
        "dropout 0.5 (confirm)": {
            "overrides": dropout, "factor": "dropout", "test_accuracy": 0.82, "sd": 0.03, "gap": 0.16,
        },
    }
    summary = summarize_study(make_study(variants, seeds=3, rng_seed=4), generated_at="")
    assert not by_name(summary, "dropout 0.5 (confirm)").vs_baseline.significant
    cause = next(c for c in summary.causes if c.rule == "overfitting")
    assert "looks like the fix" not in cause.title + cause.statement
    assert "dropout 0.5 (model.dropout 0 -> 0.5) was not confirmed on fresh seeds" in cause.statement
    assert cause.fix is None
    assert all(fix.changes != dropout for fix in cause.try_next)

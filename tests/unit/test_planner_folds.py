"""The planner's out-of-fold runs: when label noise is searched, the search stage also trains the
baseline's K out-of-fold runs (one seed each, counted against the budget, only as a whole set);
never when label noise is not searched, and never again once trained."""

from __future__ import annotations

from service.diagnose import Stage, StageVariant
from service.diagnose.search import FOLDS, OUT_OF_FOLD
from tests.diagnose_planning import BASELINE_DONE, SEEDS, assert_buildable, plan, summarize

NOISY = {"baseline": {"test_accuracy": 0.85, "val_offset": -0.10}}
"""Validation 10 points under test: the training labels look noisy."""


def folds_of(found: Stage) -> list[StageVariant]:
    return [v for v in found.variants if v.factor == OUT_OF_FOLD]


def test_searching_label_noise_adds_the_baselines_out_of_fold_runs_on_one_seed():
    summary = summarize(NOISY, seeds=5)
    found = plan(summary, [BASELINE_DONE])
    folds = folds_of(found)
    assert [v.overrides for v in folds] == [
        {"training.holdout": {"folds": FOLDS, "fold": fold}} for fold in range(FOLDS)
    ]
    assert all(v.seeds == [SEEDS[0]] for v in folds)
    others = [v for v in found.variants if v.factor != OUT_OF_FOLD]
    assert others and all(v.seeds is None for v in others)
    assert found.runs == len(others) * len(SEEDS) + FOLDS  # one run per fold
    assert "out-of-fold" in found.reason and "mislabelled" in found.reason
    assert_buildable(found)


def test_no_out_of_fold_runs_when_label_noise_is_not_searched():
    rising = plan(summarize({"baseline": {"curve": "rising"}}, seeds=5), [BASELINE_DONE])
    overfit = plan(summarize({"baseline": {"gap": 0.2}}, seeds=5), [BASELINE_DONE])
    for found in (rising, overfit):
        assert found.variants and folds_of(found) == []
        assert all("training.holdout" not in v.overrides for v in found.variants)


def test_a_budget_that_cannot_hold_every_fold_trains_none_of_them():
    summary = summarize(NOISY, seeds=5)
    full = plan(summary, [BASELINE_DONE])
    before = full.variants.index(folds_of(full)[0])
    # Room for the variants before the folds and all but one fold.
    budget = before * len(SEEDS) + FOLDS - 1
    cut = plan(summary, [BASELINE_DONE], budget=budget)
    assert folds_of(cut) == [] and cut.runs <= budget
    assert "budget" in cut.reason
    # One more run and the whole set fits.
    assert len(folds_of(plan(summary, [BASELINE_DONE], budget=budget + 1))) == FOLDS


def test_out_of_fold_runs_already_trained_are_not_planned_again():
    summary = summarize(NOISY, seeds=5)
    first = plan(summary, [BASELINE_DONE])
    done = Stage(
        index=1, kind="search", reason="done",
        variants=[v for v in first.variants if v.factor == OUT_OF_FOLD], seeds=SEEDS,
    )  # fmt: skip
    again = plan(summary, [BASELINE_DONE, done])
    assert again is None or folds_of(again) == []

"""service.diagnose's runs: the budget cuts a stage, keeping its most direct variants, and the
reason says so; nothing already trained is proposed again; a stage is read back from the
driver's round document and expands through the plan like a spec's own variants."""

from __future__ import annotations

import pytest

from service.diagnose import Stage
from service.lifecycle.documents import RoundDocument, Variant
from service.spec.models import TrainConfig
from tests.diagnose_planning import BASELINE_DONE, CHANCE, SEEDS, plan, rates, stage, summarize
from tests.planted_study import make_study

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

"""Study expansion: strategies, counts, collapsing identical runs, stable ids, bad factors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.errors import SpecError
from service.identity import RunSpec, study_id
from service.plan import build_plan
from service.spec import load_spec, spec_from_data


def spec(ablation: dict, **fields):
    return spec_from_data({"name": "plan test", **fields, "ablation": ablation})


def test_one_at_a_time_counts_variants_times_seeds():
    plan = build_plan(
        spec(
            {
                "seeds": 2,
                "factors": [
                    {"path": "optimizer.learning_rate", "values": [0.01, 0.0001]},
                    {"path": "model.dropout", "values": [0.3]},
                ],
            }
        )
    )
    assert [v.name for v in plan.variants] == [
        "baseline",
        "optimizer.learning_rate=0.01",
        "optimizer.learning_rate=0.0001",
        "model.dropout=0.3",
    ]
    assert plan.run_count == 8
    assert all(len(v.run_ids) == 2 for v in plan.variants)


def test_value_equal_to_baseline_collapses_into_baseline_runs():
    plan = build_plan(spec({"seeds": 3, "factors": [{"path": "model.dropout", "values": [0.0, 0.2]}]}))
    baseline, same, other = plan.variants
    assert same.run_ids == baseline.run_ids
    assert plan.run_count == 6


def test_grid_is_the_full_product():
    plan = build_plan(
        spec(
            {
                "strategy": "grid",
                "seeds": [7],
                "factors": [
                    {"path": "optimizer.learning_rate", "values": [0.01, 0.001]},
                    {"path": "model.dropout", "values": [0.0, 0.5]},
                    {"path": "training.batch_size", "values": [16, 64]},
                ],
            }
        )
    )
    # the baseline (lr 0.001, dropout 0, batch 32) plus 8 cells
    assert len(plan.variants) == 9
    assert plan.run_count == 9
    assert {run.seed for run in plan.runs.values()} == {7}


def test_loco_removes_each_component():
    plan = build_plan(
        spec(
            {"strategy": "loco", "seeds": 1, "components": ["dropout", "augmentation", "l2", "conv_block.0"]},
            model={"dropout": 0.5, "l2": 0.001, "conv_blocks": [{"filters": 8}, {"filters": 16}]},
            augmentation={"horizontal_flip": True},
        )
    )
    configs = {v.name: plan.runs[v.run_ids[0]].config for v in plan.variants}
    assert configs["no dropout"].model.dropout == 0.0
    assert not configs["no augmentation"].augmentation.enabled
    assert configs["no l2"].model.l2 == 0.0
    assert [b.filters for b in configs["no conv_block.0"].model.conv_blocks] == [16]
    assert configs["baseline"].model.dropout == 0.5


def test_loco_block_out_of_range_is_named():
    with pytest.raises(SpecError, match=r"ablation.components\[0\].*2 conv blocks"):
        build_plan(spec({"strategy": "loco", "components": ["conv_block.5"]}))


def test_unknown_factor_path_is_named_with_a_suggestion():
    with pytest.raises(SpecError) as caught:
        build_plan(spec({"factors": [{"path": "optimizer.learning_rat", "values": [0.1]}]}))
    field, message = caught.value.problems[0]
    assert field == "ablation.factors[0].values[0]"
    assert "unknown factor path 'optimizer.learning_rat'" in message
    assert "did you mean 'optimizer.learning_rate'" in message


def test_factor_value_of_the_wrong_type_is_named():
    with pytest.raises(SpecError) as caught:
        build_plan(spec({"factors": [{"path": "model.dropout", "values": [1.5]}]}))
    field, message = caught.value.problems[0]
    assert field == "ablation.factors[0].values[0] (model.dropout)"
    assert "less than 1" in message


def test_plan_over_max_runs_is_refused():
    with pytest.raises(SpecError, match=r"ablation.max_runs: the plan has 12 runs"):
        build_plan(
            spec({"seeds": 4, "max_runs": 10, "factors": [{"path": "model.dropout", "values": [0.1, 0.2]}]})
        )


def test_run_ids_are_stable_and_independent_of_key_order():
    a = spec_from_data({"name": "s", "optimizer": {"name": "adam", "learning_rate": 0.01}, "model": {"dropout": 0.1}})
    b = spec_from_data({"model": {"dropout": 0.1}, "optimizer": {"learning_rate": 0.01, "name": "adam"}, "name": "s"})
    assert study_id(a) == study_id(b)
    assert sorted(build_plan(a).runs) == sorted(build_plan(b).runs)


def test_run_id_is_stable_across_processes():
    plan = build_plan(load_spec("examples/seed-study.yaml"))
    code = (
        "from service.plan import build_plan; from service.spec import load_spec;"
        "print(sorted(build_plan(load_spec('examples/seed-study.yaml')).runs))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(sorted(plan.runs))


def test_run_id_is_sha256_of_canonical_json():
    import hashlib

    run = next(iter(build_plan(spec({"seeds": 1})).runs.values()))
    canonical = json.dumps(run.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    assert run.run_id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert RunSpec.model_validate_json(run.model_dump_json()).run_id == run.run_id


def test_study_id_is_slug_plus_hash():
    assert study_id(spec({})).startswith("plan-test-")
    assert len(study_id(spec({})).rsplit("-", 1)[1]) == 32
    assert study_id(spec({"seeds": 2})) != study_id(spec({"seeds": 3}))


def test_seed_study_plan_matches_the_article():
    plan = build_plan(load_spec("examples/seed-study.yaml"))
    assert len(plan.variants) == 4 and plan.run_count == 12
    configs = {v.name: plan.runs[v.run_ids[0]].config for v in plan.variants}
    decayed = configs["lr 0.001 + exponential decay"]
    assert decayed.optimizer.learning_rate == 0.001 and decayed.schedule.name == "exponential_decay"
    assert configs["no dropout"].model.dropout == 0.0
    assert not configs["no horizontal flip"].augmentation.horizontal_flip


def test_diagnose_builds_the_standard_battery_from_a_baseline():
    plan = build_plan(spec(
        {"strategy": "diagnose", "seeds": 2},
        optimizer={"name": "adam", "learning_rate": 0.01},
        model={"dropout": 0.5},
    ))
    configs = {v.name: plan.runs[v.run_ids[0]].config for v in plan.variants}
    assert list(configs) == [
        "baseline", "lr x0.1", "lr x0.3", "lr x3", "cosine decay", "no dropout", "l2 1e-4",
        "augmentation (shift, zoom)", "half width", "double width", "double epochs",
    ]
    assert configs["lr x0.1"].optimizer.learning_rate == pytest.approx(0.001)
    assert configs["lr x3"].optimizer.learning_rate == pytest.approx(0.03)
    assert configs["no dropout"].model.dropout == 0.0
    assert configs["l2 1e-4"].model.l2 == 0.0001
    assert configs["augmentation (shift, zoom)"].augmentation.enabled
    assert [b.filters for b in configs["double width"].model.conv_blocks] == [64, 128]
    assert configs["double width"].model.dense == [256]
    assert [b.filters for b in configs["half width"].model.conv_blocks] == [16, 32]
    assert configs["double epochs"].training.epochs == 20
    assert plan.run_count == 22


def test_diagnose_switches_off_what_the_baseline_has():
    plan = build_plan(
        spec(
            {"strategy": "diagnose", "seeds": 1},
            model={"l2": 0.001},
            schedule={"name": "exponential_decay"},
            augmentation={"horizontal_flip": True},
        )
    )
    names = [v.name for v in plan.variants]
    assert {"no l2", "constant lr", "no augmentation", "dropout 0.5"} <= set(names)


def test_diagnose_takes_no_factors():
    with pytest.raises(SpecError, match="diagnose"):
        build_plan(spec({"strategy": "diagnose", "factors": [{"path": "model.dropout", "values": [0.1]}]}))


def test_factors_may_set_options_that_the_canonical_dump_leaves_out_at_their_default():
    # training.train_fraction and class_weight are omitted from run identity at their defaults;
    # a factor still reaches them by path, and the baseline's run ids do not move.
    plain = spec_from_data({"name": "opts", "dataset": {"kind": "digits"}, "ablation": {"seeds": 1}})
    spec = spec_from_data({
        "name": "opts", "dataset": {"kind": "digits"},
        "ablation": {"seeds": 1, "factors": [
            {"path": "training.train_fraction", "values": [0.5]},
            {"path": "training.class_weight", "values": ["balanced"]},
        ]},
    })
    plan = build_plan(spec)
    assert [v.name for v in plan.variants][1:] == ["training.train_fraction=0.5", "training.class_weight=balanced"]
    assert plan.variants[0].run_ids == build_plan(plain).variants[0].run_ids
    assert plan.runs[plan.variants[1].run_ids[0]].config.training.train_fraction == 0.5


def test_a_class_weight_for_a_class_the_data_lacks_is_refused_when_planning():
    spec = spec_from_data({
        "name": "weights", "dataset": {"kind": "digits"},
        "ablation": {"seeds": 1, "factors": [{"path": "training.class_weight", "values": [{"12": 2.0}]}]},
    })
    with pytest.raises(SpecError, match=r"ablation.factors\[0\].values\[0\] \(training.class_weight.12\)"):
        build_plan(spec)


def test_max_seeds_is_absent_from_the_spec_dump_until_set():
    data = {"name": "seeds", "dataset": {"kind": "digits"}, "ablation": {"seeds": 2}}
    unset = spec_from_data(data)
    assert "max_seeds" not in unset.model_dump(mode="json")["ablation"]
    data["ablation"]["max_seeds"] = 6
    set_ = spec_from_data(data)
    assert set_.ablation.max_seeds == 6 and study_id(set_) != study_id(unset)
    data["ablation"]["max_seeds"] = 1
    with pytest.raises(SpecError, match="ablation.max_seeds"):
        spec_from_data(data)

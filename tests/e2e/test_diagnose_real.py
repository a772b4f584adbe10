"""`ablate diagnose` with real training on digits: a baseline at chance is called first, an
overfit small-data baseline is named from its own runs, and a healthy baseline gets nothing to
fix. Each study is the standard battery around a tiny CNN, 2 seeds, a few epochs."""

from __future__ import annotations

import json

import pytest
import yaml

from service.plan import build_plan
from service.spec import load_spec, spec_from_data
from tests.e2e.test_cli_run import ablate

pytestmark = pytest.mark.slow

BASE = {
    "dataset": {"kind": "digits", "validation_split": 0.15, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 8}], "dense": [32]},
    "optimizer": {"name": "adam", "learning_rate": 0.005},
    "training": {"epochs": 8, "batch_size": 64},
    "ablation": {"seeds": 2},
}


def diagnose(tmp_path, name: str, **changes) -> tuple[dict, str, object]:
    spec = {**yaml.safe_load(yaml.safe_dump(BASE)), "name": name}
    for section, values in changes.items():
        spec[section] = {**spec.get(section, {}), **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    store = tmp_path / "store"
    result = ablate("diagnose", str(path), "--store", str(store), "--jobs", "2", "--budget-runs", "24")
    assert result.returncode == 0, result.stderr
    plan = build_plan(load_spec(path).model_copy(update={"ablation": _diagnose_ablation(path)}))
    report = store / "studies" / plan.study_id / "report"
    summary = json.loads((report / "summary.json").read_text())
    return summary, result.stdout, report


def _diagnose_ablation(path):
    from service.spec.ablation import AblationSpec

    study = load_spec(path)
    return AblationSpec(strategy="diagnose", seeds=study.ablation.seeds, max_runs=study.ablation.max_runs)


def test_a_baseline_at_chance_is_called_first_with_a_learning_rate_search_to_run(tmp_path):
    summary, stdout, report = diagnose(
        tmp_path, "chance", optimizer={"learning_rate": 8.0}, training={"epochs": 3}
    )
    top = summary["causes"][0]
    assert top["rule"] in ("learned_nothing", "learning_rate_too_high"), summary["verdict"]
    assert set(top["symptoms"]) & {"learned_nothing", "diverged"}
    assert "Answer:" in stdout and top["title"][:40] in stdout.replace("\n", " ")
    if top["fix"] is None:  # nothing tested trains: the next study goes lower
        rates = [
            f["changes"]["optimizer.learning_rate"]
            for f in top["try_next"]
            if "optimizer.learning_rate" in f["changes"]
        ]
        assert min(rates) <= 8.0 / 100
        next_study = spec_from_data(yaml.safe_load((report / "next-study.yaml").read_text()))
        assert next_study.ablation.factors


def test_an_overfit_small_data_baseline_is_named_from_its_own_gap(tmp_path):
    summary, _, _ = diagnose(
        tmp_path,
        "overfit",
        dataset={"test_split": 0.97, "validation_split": 0.1},
        model={"conv_blocks": [{"filters": 16}], "dense": [128]},
        training={"epochs": 25, "batch_size": 16},
    )
    rules = [cause["rule"] for cause in summary["causes"]]
    assert rules and rules[0] == "overfitting", summary["verdict"]
    symptom = next(s for s in summary["symptoms"] if s["rule"] == "overfitting")
    assert symptom["evidence"]["gap"] > 0.05
    # 10% of the 54 training images: too few to measure the gap on, so it is train minus test
    assert symptom["evidence"]["measured_against"] == "test"


def test_a_healthy_baseline_gets_nothing_to_fix(tmp_path):
    summary, stdout, _ = diagnose(tmp_path, "healthy", training={"epochs": 12, "batch_size": 32})
    assert summary["causes"] == [], summary["verdict"]
    assert summary["verdict"].startswith("Nothing to fix found")
    assert "Nothing to fix found" in stdout

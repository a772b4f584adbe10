"""`ablate run` end to end: the demo study, reuse on a second run, resume after SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from service.lifecycle.documents import RunMetrics, RunStatus
from service.plan import build_plan
from service.report.models import Summary
from service.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


def ablate(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        cwd=kwargs.pop("cwd", REPO),
        timeout=kwargs.pop("timeout", 600),
        **kwargs,
    )


def reduced_demo(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "examples/seed-study.yaml").read_text())
    data["training"]["epochs"] = 2
    data["ablation"]["seeds"] = 2
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_demo_study_writes_every_artifact_and_a_second_run_trains_nothing(tmp_path):
    spec_path = reduced_demo(tmp_path)
    store = tmp_path / "store"
    first = ablate("run", str(spec_path), "--store", str(store), "--jobs", "2")
    assert first.returncode == 0, first.stderr
    plan = build_plan(load_spec(spec_path))
    assert plan.run_count == 8

    study = json.loads((store / "studies" / plan.study_id / "study.json").read_text())
    assert study["run_ids"] == sorted(plan.runs)
    assert [v["name"] for v in study["variants"]] == [v.name for v in plan.variants]
    for run_id in plan.runs:
        run_dir = store / "runs" / run_id
        for name in ("run.json", "status.json", "model.keras", "metrics.json", "checkpoints/latest.json"):
            assert (run_dir / name).is_file(), f"{run_id}/{name}"
        metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
        assert [h.epoch for h in metrics.history] == [1, 2]
        assert RunStatus.model_validate_json((run_dir / "status.json").read_text()).state == "succeeded"

    for variant in plan.variants:
        assert variant.name in first.stdout
    assert "8 runs trained, 0 reused" in first.stdout
    assert f"studies/{plan.study_id}" in first.stdout

    # The report: every file, a summary that names every variant with its seeds, and a printed path.
    report = store / "studies" / plan.study_id / "report"
    assert f"report: {report / 'index.html'}" in first.stdout.replace("\n", "")
    for name in ("index.html", "report.md", "summary.json", "runs.csv"):
        assert (report / name).stat().st_size > 0, name
    for name in ("test_accuracy.png", "learning_curves.png", "train_val_gap.png", "confusion_baseline.png"):
        assert (report / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    summary = Summary.model_validate_json((report / "summary.json").read_text())
    assert summary.study_id == plan.study_id and not summary.partial
    assert summary.counts == {"succeeded": 8}
    assert {v.name: v.seeds for v in summary.variants} == {v.name: 2 for v in plan.variants}
    rows = list(csv.DictReader((report / "runs.csv").open()))
    assert sorted(row["run_id"] for row in rows) == sorted(plan.runs)
    html = (report / "index.html").read_text()
    assert all(v.name in html for v in plan.variants) and "data:image/png;base64," in html

    before = {p: p.stat().st_mtime_ns for p in store.rglob("metrics.json")}
    second = ablate("run", str(spec_path), "--store", str(store))
    assert second.returncode == 0, second.stderr
    assert "0 runs trained, 8 reused" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in store.rglob("metrics.json")} == before


def test_killed_run_resumes_from_its_checkpoint_with_a_continuous_history(tmp_path, tiny_spec, write_spec):
    tiny_spec["training"]["epochs"] = 30
    spec_path = write_spec(tiny_spec)
    store = tmp_path / "store"
    (run_id,) = build_plan(load_spec(spec_path)).runs
    latest = store / "runs" / run_id / "checkpoints" / "latest.json"

    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "run", str(spec_path), "--store", str(store)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if latest.is_file() and json.loads(latest.read_text())["epoch"] >= 2:
                break
            assert process.poll() is None, "ablate run ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint after 300 s")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    time.sleep(1.0)  # let the orphaned trainer receive its parent-death signal
    killed_at = json.loads(latest.read_text())["epoch"]
    assert 2 <= killed_at < 30
    assert not (store / "runs" / run_id / "metrics.json").exists()

    resumed = ablate("run", str(spec_path), "--store", str(store))
    assert resumed.returncode == 0, resumed.stderr
    metrics = RunMetrics.model_validate_json((store / "runs" / run_id / "metrics.json").read_text())
    assert [h.epoch for h in metrics.history] == list(range(1, 31))
    assert metrics.resumed_from_epoch == killed_at
    assert metrics.attempt == 2


def test_validate_prints_the_plan_without_writing(tmp_path):
    result = ablate("validate", "examples/seed-study.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "4 variants x 3 seeds = 12 runs" in result.stdout
    assert "lr 0.001 + exponential decay" in result.stdout


def test_schema_is_json_schema_for_the_spec():
    result = ablate("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Ablate study spec"
    assert "ablation" in schema["properties"]

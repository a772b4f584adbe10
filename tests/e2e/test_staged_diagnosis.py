"""`ablate diagnose` in stages with real training on digits: a baseline at chance is searched
over several decades of learning rate, repaired, and the driving process killed between two
stages is resumed by running the command again, training nothing twice."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import yaml

from service.diagnose.staged import REPAIRED_FILE, diagnosis_spec
from service.identity import study_id
from service.lifecycle.documents import RoundDocument, RunMetrics
from service.spec import load_spec, spec_from_data
from tests.e2e.test_cli_run import REPO, ablate
from tests.waits import wait_until

pytestmark = pytest.mark.slow

CHANCE = {
    "name": "staged-chance",
    "dataset": {"kind": "digits", "validation_split": 0.15, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 8}], "dense": [32]},
    "optimizer": {"name": "adam", "learning_rate": 8.0},
    "training": {"epochs": 2, "batch_size": 64},
    "ablation": {"seeds": 2},
}
BUDGET = "12"


def stored(store, key):
    return json.loads((store / key).read_text())


def test_a_chance_baseline_is_searched_over_decades_repaired_and_resumed_after_a_kill(tmp_path):
    path = tmp_path / "chance.yaml"
    path.write_text(yaml.safe_dump(CHANCE, sort_keys=False))
    store = tmp_path / "store"
    study = study_id(diagnosis_spec(load_spec(path)))
    rounds = store / "studies" / study / "rounds"
    command = [sys.executable, "-m", "service.cli", "diagnose", str(path), "--store", str(store),
               "--jobs", "2", "--budget-runs", BUDGET]

    # Kill the driving process (and its training processes) once the search stage is planned.
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_until(lambda: (rounds / "001.json").is_file() or first.poll() is not None, 600,
                   "the search stage to be planned")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    planned = {p.name: p.read_text() for p in rounds.glob("*.json")}
    assert "000.json" in planned and "001.json" in planned
    baseline_round = RoundDocument.model_validate_json(planned["000.json"])
    finished = {
        run_id: (store / "runs" / run_id / "metrics.json").read_text()
        for run_id in baseline_round.runs
    }
    assert all(finished.values())  # the baseline's runs ended before its successor was planned

    again = ablate("diagnose", str(path), "--store", str(store), "--jobs", "2", "--budget-runs", BUDGET)
    assert again.returncode == 0, again.stderr

    # Stored rounds were replayed, not re-planned, and no finished run was trained again.
    for name, text in planned.items():
        assert (rounds / name).read_text() == text, name
    for run_id, text in finished.items():
        assert (store / "runs" / run_id / "metrics.json").read_text() == text, run_id

    # The search looked over several decades of learning rate, below and at the baseline's edge.
    search = RoundDocument.model_validate_json(planned["001.json"])
    assert search.kind == "search" and "learn" in search.reason.lower()
    rates = sorted({run.config.optimizer.learning_rate for run in search.runs.values()} - {8.0})
    assert len(rates) >= 3 and math.log10(max(rates) / min(rates)) >= 2, rates

    # The answer: the learning rate, and a repaired config that beats the baseline.
    report = store / "studies" / study / "report"
    summary = stored(report, "summary.json")
    assert summary["causes"] and summary["causes"][0]["rule"] in ("learning_rate_too_high", "learned_nothing")
    repaired = spec_from_data(yaml.safe_load((report / REPAIRED_FILE).read_text()))
    assert repaired.optimizer.learning_rate <= 0.1
    assert "measured gain over the baseline: +" in (report / REPAIRED_FILE).read_text()
    assert "repair: optimizer.learning_rate=" in again.stdout.replace("\n", " ")
    metrics = [RunMetrics.model_validate_json(p.read_text()) for p in store.glob("runs/*/metrics.json")]
    assert len(metrics) <= int(BUDGET)

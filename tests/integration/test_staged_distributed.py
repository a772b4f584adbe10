"""`ablate diagnose --submit`: the staged diagnosis on the cluster (real Redis, the S3 server,
two `ablate worker` processes). The driving process plans each stage from what the workers
stored, through the same driver as the local mode; every run is trained by a worker."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from service.diagnose.staged import diagnosis_spec
from service.identity import study_id
from service.lifecycle.documents import RoundDocument
from service.lifecycle.states import RunState
from service.lifecycle.storage import effective_state, round_key, study_key
from service.spec import spec_from_data
from service.store import open_store
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.slow

CHANCE = {
    **TINY,
    "name": "staged-distributed",
    "optimizer": {"name": "adam", "learning_rate": 8.0},
    "training": {"epochs": 2, "batch_size": 64},
    "ablation": {"seeds": 2},
}
BUDGET = 6


def test_a_staged_diagnosis_runs_its_stages_on_the_workers(cluster_env, tmp_path):
    cluster = cluster_env
    path = tmp_path / "chance.yaml"
    path.write_text(yaml.safe_dump(CHANCE, sort_keys=False))
    study = study_id(diagnosis_spec(spec_from_data(CHANCE)))
    mark = cluster["workers"].mark()
    deadline = cluster["pace"].deadline(epochs=2, runs=BUDGET, extra=60)

    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "diagnose", str(path), "--submit", "--budget-runs", str(BUDGET)],
        cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=deadline,
    )
    assert result.returncode == 0, result.stderr + cluster["workers"].diagnostics()

    store = open_store(cluster["store"])
    first = RoundDocument.model_validate(store.get_json(round_key(study, 0)))
    second = RoundDocument.model_validate(store.get_json(round_key(study, 1)))
    assert (first.kind, second.kind) == ("baseline", "search")
    assert "stage 2 (search)" in result.stdout
    run_ids = {run_id for planned in (first, second) for run_id in planned.runs}
    assert len(run_ids) <= BUDGET
    logs = cluster["workers"].text(since=mark)
    for run_id in run_ids:
        assert effective_state(store, run_id)[0].is_final
        assert run_id in logs, f"{run_id} was not trained by a worker"
    assert effective_state(store, first.variants[0].run_ids[0])[0] is RunState.SUCCEEDED
    assert store.exists(study_key(study, "report/index.html"))
    assert store.exists(study_key(study, "report/summary.json"))

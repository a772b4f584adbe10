"""Load: a study of 300 short runs through two real workers; every run succeeds exactly once."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter

import boto3
import pytest

from service.client import AblationClient
from service.records import RunStatus
from service.settings import get_settings
from tests.cluster import Workers
from tests.conftest import use_s3_endpoint

RUNS = 300
SPEC = {
    "name": "load",
    "dataset": {"kind": "synthetic", "image_size": 8, "classes": 2, "samples_per_class": 12, "validation_split": 0.0, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 2, "pooling": "none"}], "global_pool": "avg", "dense": []},
    "training": {"epochs": 1, "batch_size": 32},
    "ablation": {"seeds": list(range(RUNS)), "max_runs": RUNS},
}


@pytest.fixture(scope="module")
def workers(s3_server, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_s3_endpoint(monkeypatch, s3_server)
        bucket = f"ablate-load-{uuid.uuid4().hex[:10]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        monkeypatch.setenv("ABLATE_STORE", f"s3://{bucket}/r")
        monkeypatch.setenv("ABLATE_QUEUE", f"load-{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("ABLATE_BROKER_URL", "redis://127.0.0.1:6379/0")
        get_settings.cache_clear()
        started = Workers(dict(os.environ), tmp_path_factory.mktemp("load-logs"))
        try:
            started.wait_ready()
            yield started
        finally:
            started.stop()
            get_settings.cache_clear()


def test_three_hundred_runs_each_succeed_exactly_once(workers):
    client = AblationClient()
    study = client.submit(SPEC)
    assert study.submit_report.queued == RUNS
    final = study.wait(timeout=900, poll_seconds=2)
    assert final.counts["succeeded"] == RUNS, final

    metrics = [key for key in client.store.list("runs/") if key.endswith("/metrics.json")]
    assert len(metrics) == RUNS
    assert {key.split("/")[1] for key in metrics} == set(study.run_ids)
    # each run started and succeeded once: one attempt, one "run succeeded" line
    events = Counter()
    for line in workers.text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") in ("run started", "run succeeded"):
                events[(event["event"], event["run_id"])] += 1
    assert {run_id for (_, run_id) in events} == set(study.run_ids)
    assert set(events.values()) == {1}, [k for k, v in events.items() if v != 1][:5]
    for run_id in study.run_ids[:: RUNS // 30]:
        status = RunStatus.model_validate(client.store.get_json(f"runs/{run_id}/status.json"))
        assert status.state == "succeeded" and status.attempt == 1

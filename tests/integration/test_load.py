"""Load: a study of 300 short runs through two real workers; every run succeeds exactly once."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from service.client import AblationClient
from service.lifecycle.documents import RunStatus
from tests.waits import wait_until

RUNS = 300
SPEC = {
    "name": "load",
    "dataset": {
        "kind": "synthetic",
        "image_size": 8,
        "classes": 2,
        "samples_per_class": 12,
        "validation_split": 0.0,
        "test_split": 0.25,
    },
    "model": {
        "conv_blocks": [{"filters": 2, "pooling": "none"}],
        "global_pool": "avg",
        "dense": [],
    },
    # Most of a run here is Keras tracing its training step; plain SGD's update traces in a
    # fraction of Adam's time (about 0.2 s a run on this machine). What the test proves is the
    # queue's, not the optimizer's.
    "optimizer": {"name": "sgd", "learning_rate": 0.01},
    "training": {"epochs": 1, "batch_size": 32},
    "ablation": {"seeds": list(range(RUNS)), "max_runs": RUNS},
}


@pytest.fixture(scope="module")
def cluster(cluster_env):
    """The session's shared cluster (tests/integration/conftest.py): two workers, measured pace."""
    return cluster_env


def test_three_hundred_runs_each_succeed_exactly_once(cluster):
    workers = cluster["workers"]
    client = AblationClient()
    # The store and the logs are shared with other modules: what was there before is not ours.
    before = {key for key in client.store.list("runs/") if key.endswith("/metrics.json")}
    mark = workers.mark()
    study = client.submit(SPEC)
    assert study.submit_report.queued == RUNS
    # Followed in the workers' logs, a local file: polling 300 statuses from S3 every few
    # seconds slowed the workers' own S3 requests by a third. The store has the last word.
    wanted = set(study.run_ids)

    def ended() -> bool:
        return len(wanted & _ended_runs(workers.text(since=mark))) == RUNS

    wait_until(
        ended,
        cluster["pace"].deadline(epochs=1, runs=RUNS),
        "every run to end",
        lambda: workers.diagnostics(client.store, study.run_ids[-5:]),
        poll=1,
    )
    final = study.status()
    assert final.counts["succeeded"] == RUNS, final

    metrics = [
        key
        for key in client.store.list("runs/")
        if key.endswith("/metrics.json") and key not in before
    ]
    assert len(metrics) == RUNS
    assert {key.split("/")[1] for key in metrics} == set(study.run_ids)
    # each run started and succeeded once: one attempt, one "run succeeded" line
    events = Counter()
    for line in workers.text(since=mark).splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") in ("run started", "run succeeded"):
                events[(event["event"], event["run_id"])] += 1
    assert {run_id for (_, run_id) in events} == set(study.run_ids)
    assert set(events.values()) == {1}, [k for k, v in events.items() if v != 1][:5]
    for run_id in study.run_ids[:: RUNS // 30]:
        status = RunStatus.model_validate(client.store.get_json(f"runs/{run_id}/status.json"))
        assert status.state == "succeeded" and status.attempt == 1


def _ended_runs(log: str) -> set[str]:
    """The run ids the workers logged an end for (succeeded, failed or diverged)."""
    ended = set()
    for line in log.splitlines():
        if line.startswith("{") and (
            '"run succeeded"' in line or '"run failed"' in line or '"run diverged"' in line
        ):
            ended.add(json.loads(line).get("run_id"))
    return ended

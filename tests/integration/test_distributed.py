"""The distributed path with real components: the client submits to a real Redis, two real
`ablate worker` processes train, and every artifact lands in a real S3 server (moto, over HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest
import redis
import yaml

from service.client import AblationClient
from service.errors import StoreError
from service.lifecycle.documents import RunMetrics
from service.lifecycle.storage import read_status
from tests.cluster import wait_study
from tests.conftest import REPO, TINY
from tests.waits import wait_until

BROKER = "redis://127.0.0.1:6379/0"

SPEC = {
    **TINY,
    "name": "distributed",
    "training": {"epochs": 2, "batch_size": 64},
    "ablation": {"seeds": 2, "factors": [{"path": "model.dropout", "values": [0.3]}]},
}


@pytest.fixture(scope="module")
def cluster(cluster_env):
    """The session's shared cluster (tests/integration/conftest.py): S3 env, a bucket, a queue of
    its own on the machine's Redis, two running workers, and their measured pace."""
    return cluster_env


def finish(cluster, study, timeout: float):
    return wait_study(cluster["workers"], client_for(cluster), study, timeout)


def client_for(cluster) -> AblationClient:
    return AblationClient(broker_url=BROKER, store_url=cluster["store"], queue=cluster["queue"])


def test_study_runs_on_workers_and_matches_the_embedded_path(cluster, tmp_path):
    client = client_for(cluster)
    mark = cluster["workers"].mark()  # the shared workers' logs from here on: this test's
    study = client.submit(SPEC)
    assert study.submit_report.queued == 4
    final = finish(cluster, study, cluster["pace"].deadline(epochs=2, runs=4))
    assert final.complete and final.counts["succeeded"] == 4, final

    # both workers took part, and every log line of a run carries its study_id and run_id
    logs = cluster["workers"].text(since=mark)
    run_lines = [
        json.loads(line)
        for line in logs.splitlines()
        if line.startswith("{") and '"run started"' in line
    ]
    assert {line["study_id"] for line in run_lines} == {study.study_id}
    assert {line["run_id"] for line in run_lines} == set(study.run_ids)

    # the same runs through `ablate run` give the same metrics (one code path)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    local = tmp_path / "local"
    embedded = subprocess.run(
        [sys.executable, "-m", "service.cli", "run", str(spec_path), "--store", str(local)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert embedded.returncode == 0, embedded.stderr
    for run_id in study.run_ids:
        remote = RunMetrics.model_validate(client.store.get_json(f"runs/{run_id}/metrics.json"))
        here = RunMetrics.model_validate_json(
            (local / "runs" / run_id / "metrics.json").read_text()
        )
        assert remote.test.accuracy == pytest.approx(here.test.accuracy, abs=1e-6)
        assert [h.loss for h in remote.history] == pytest.approx(
            [h.loss for h in here.history], rel=1e-4
        )

    # resubmitting queues nothing
    again = client.submit(SPEC)
    assert again.study_id == study.study_id
    assert (again.submit_report.queued, again.submit_report.reused) == (0, 4)

    rows = study.results()
    assert len(rows) == 4 and all(row["state"] == "succeeded" for row in rows)
    assert {row["variant"] for row in rows} == {"baseline", "model.dropout=0.3"}


def test_pull_downloads_the_documented_layout(cluster, tmp_path):
    client = client_for(cluster)
    study = client.submit(SPEC)
    finish(cluster, study, cluster["pace"].deadline(epochs=2, runs=4))
    dest = tmp_path / "pulled"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "pull", study.study_id, str(dest)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        json.loads((dest / "studies" / study.study_id / "study.json").read_text())["run_ids"]
        == study.run_ids
    )
    for run_id in study.run_ids:
        for name in (
            "run.json",
            "status.json",
            "model.keras",
            "metrics.json",
            "checkpoints/latest.json",
        ):
            assert (dest / "runs" / run_id / name).is_file(), name


def test_npz_dataset_in_s3_is_trained_on(cluster, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((120, 10, 10, 1)).astype("float32")
    y = np.arange(120) % 3
    x[y == 1, :5] += 1.0  # make the classes learnable
    x[y == 2, 5:] += 1.0
    local = tmp_path / "data.npz"
    np.savez(local, x_train=x, y_train=y)
    boto3.client("s3").upload_file(str(local), cluster["bucket"], "datasets/data.npz")

    spec = {
        **SPEC,
        "name": "s3 npz",
        "dataset": {"kind": "npz", "path": f"s3://{cluster['bucket']}/datasets/data.npz"},
        "ablation": {"seeds": 1},
    }
    client = client_for(cluster)
    study = client.submit(spec)
    final = finish(cluster, study, cluster["pace"].deadline(epochs=2))
    assert final.counts["succeeded"] == 1, final
    (row,) = study.results()
    metrics = RunMetrics.model_validate(client.store.get_json(f"runs/{row['run_id']}/metrics.json"))
    assert metrics.class_names == ["0", "1", "2"]
    assert metrics.test.samples == 24


def test_missing_bucket_gives_a_clear_error(cluster):
    client = AblationClient(
        broker_url=BROKER, store_url="s3://no-such-bucket-here/x", queue=cluster["queue"]
    )
    started = time.monotonic()
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        client.submit(SPEC)
    assert time.monotonic() - started < 10


def test_cancel_stops_runs_and_resubmitting_resumes_them(cluster):
    spec = {
        **SPEC,
        "name": "cancel me",
        "training": {"epochs": 40, "batch_size": 64},
        "ablation": {"seeds": 3},
    }
    client = client_for(cluster)
    study = client.submit(spec)
    pace = cluster["pace"]
    wait_until(
        lambda: any(
            v.running_epochs and v.running_epochs[0][0] >= 1 for v in study.status().variants
        ),
        pace.deadline(epochs=1),
        "a run to start training",
        lambda: cluster["workers"].diagnostics(client.store, study.run_ids),
        poll=0.1,
    )
    assert study.cancel() == 3
    final = wait_study(cluster["workers"], client, study, pace.deadline(epochs=1, runs=3), poll=0.2)
    assert final.counts["cancelled"] == 3, final
    stopped = [read_status(client.store, run_id) for run_id in study.run_ids]
    assert any(0 < s.epoch < 40 for s in stopped), [s.epoch for s in stopped]

    again = client.submit(spec)
    assert again.submit_report.queued == 3
    assert finish(cluster, again, pace.deadline(epochs=40, runs=3)).counts["succeeded"] == 3
    for before in stopped:
        metrics = RunMetrics.model_validate(
            client.store.get_json(f"runs/{before.run_id}/metrics.json")
        )
        assert [h.epoch for h in metrics.history] == list(range(1, 41))
        if before.epoch > 0:
            assert metrics.resumed_from_epoch == before.epoch
    # stale messages of the first submission never trained a run twice
    starts = [
        line
        for line in cluster["workers"].text().splitlines()
        if '"run started"' in line and "cancel-me" in line
    ]
    assert len(starts) <= 3 + sum(1 for s in stopped if s.epoch > 0)


def test_a_pickled_message_is_refused_and_never_executed(cluster):
    from service.queue import TRAIN_TASK, make_celery
    from service.settings import Settings

    client = client_for(cluster)
    plan = client.plan({**SPEC, "name": "pickled", "ablation": {"seeds": [99]}})
    ((run_id, run),) = plan.runs.items()
    app = make_celery(Settings(broker_url=BROKER, queue=cluster["queue"], store=cluster["store"]))
    app.conf.accept_content = ["json", "pickle"]  # a rogue producer
    app.send_task(
        TRAIN_TASK,
        kwargs={
            "run": run.model_dump(mode="json"),
            "study_id": plan.study_id,
            "store": client.store.url,
        },
        queue=cluster["queue"],
        serializer="pickle",
    )
    workers = cluster["workers"]
    wait_until(
        lambda: "application/x-python-serialize" in workers.text(),
        cluster["pace"].deadline(),
        "the workers to see the pickled message",
        workers.diagnostics,
    )
    # and once it is off the queue with no worker running anything, it never ran
    broker = redis.Redis.from_url(BROKER)
    wait_until(
        lambda: broker.llen(cluster["queue"]) == 0 and not workers.busy(),
        cluster["pace"].deadline(),
        "the workers to be idle",
        workers.diagnostics,
    )
    assert not client.store.exists(f"runs/{run_id}/status.json")
    assert (
        "ContentDisallowed" in cluster["workers"].text()
        or "disallowed" in cluster["workers"].text().lower()
    )


def test_an_unreachable_broker_is_one_clear_error_and_nothing_is_written(
    tmp_path, write_spec, tiny_spec
):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "submit",
            str(write_spec(tiny_spec)),
            "--store",
            str(tmp_path / "store"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ABLATE_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"},
    )
    assert result.returncode == 2
    assert "error: cannot use the broker redis://:***@127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert not (tmp_path / "store").exists()

"""Faults against real processes: a redis-server and S3 (moto behind a TCP proxy) of the test's
own, and `ablate worker` processes the tests kill, stop and restart. Nothing is lost, nothing
trains twice."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import uuid

import boto3
import pytest

from service.client import AblationClient
from service.lifecycle.documents import RunMetrics
from service.lifecycle.storage import read_status
from service.queue import TRAIN_TASK, make_celery
from service.settings import Settings, get_settings
from tests.cluster import Workers, calibrate, takes_new_work, trained_by, wait_study
from tests.conftest import REPO, TINY, use_s3_endpoint
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy
from tests.waits import SLACK, Pace, wait_until

KILLER = """
import os, signal

def build(config, input_shape, num_classes):
    os.kill(os.getpid(), signal.SIGKILL)  # the worker's pool process dies every time
"""


def tiny(name: str, epochs: int, seeds=1, **changes) -> dict:
    return {
        **TINY,
        "name": name,
        "training": {"epochs": epochs, "batch_size": 64},
        "ablation": {"seeds": seeds},
        **changes,
    }


def time_limit(pace: Pace) -> int:
    """ABLATE_RUN_TIME_LIMIT for this module, from the machine's measured pace: 20 s, or more
    where the longest run of a test (70 epochs on a replaced worker's first run, which loads
    TensorFlow inside the limit; or 40 epochs around a 10 s S3 outage and its retries) would not
    fit twice over. A fixed 20 s failed the killed-worker test on a busy machine."""
    longest = max(2 * (pace.cold_run_seconds + pace.run_seconds(70)), 2 * pace.run_seconds(40) + 25)
    return max(20, math.ceil(longest))


@pytest.fixture(scope="module")
def cluster(s3_server, shared_cluster, tmp_path_factory):
    """Own Redis (AOF), S3 through a proxy that can go down, two workers with short timeouts
    (the run time limit sized from the shared cluster's measured pace)."""
    limit = time_limit(shared_cluster["pace"])
    probe = Settings(run_time_limit=limit, visibility_timeout=10**6)
    root = tmp_path_factory.mktemp("faults")
    (root / "plugins").mkdir()
    (root / "plugins" / "killer.py").write_text(KILLER)
    host, port = s3_server.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    proxy.up()
    with pytest.MonkeyPatch.context() as monkeypatch, RedisServer(root / "redis") as redis_server:
        use_s3_endpoint(monkeypatch, proxy.endpoint)
        bucket = f"ablate-faults-{uuid.uuid4().hex[:10]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        env = {
            "ABLATE_BROKER_URL": redis_server.url,
            "ABLATE_STORE": f"s3://{bucket}/results",
            "ABLATE_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
            "ABLATE_RUN_TIME_LIMIT": str(limit),
            # just above the hard limit: a dead worker's run comes back as soon as it safely can
            "ABLATE_VISIBILITY_TIMEOUT": str(probe.hard_time_limit + 4),
            "ABLATE_LEASE_SECONDS": "3",
            "ABLATE_MAX_ATTEMPTS": "3",
            "ABLATE_FACTORY_MODULES": "killer",  # workers import no factory unless allowed
            "ABLATE_DATASET_CACHE": str(root / "cache"),
            "PYTHONPATH": f"{root / 'plugins'}{os.pathsep}{REPO}",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(
            str(root / "plugins")
        )  # the planner hashes the factory's source
        get_settings.cache_clear()
        workers = Workers(dict(os.environ), root)
        try:
            workers.wait_ready()
            pace = calibrate(workers, AblationClient())
            print(f"fault cluster pace: {pace}; run time limit {limit}s")
            yield {
                "workers": workers,
                "redis": redis_server,
                "proxy": proxy,
                "env": env,
                "pace": pace,
            }
        finally:
            workers.stop()
            proxy.down()
            get_settings.cache_clear()


def client() -> AblationClient:
    return AblationClient()


def submit_fresh(c: AblationClient, spec: dict):
    """Submit a spec whose runs are all new. Run identity is the config, not the study name: two
    tests with the same config would share a run, and the second would only reuse the result."""
    study = c.submit(spec)
    assert study.submit_report.reused == 0 and study.submit_report.already_queued == 0, (
        study.submit_report
    )
    return study


def wait_for(cluster, predicate, timeout: float, what: str, run_ids=(), poll: float = 0.1):
    """Poll `predicate` up to `timeout` (a deadline from `Pace`); on timeout, the diagnostics."""
    return wait_until(
        predicate,
        timeout,
        what,
        lambda: cluster["workers"].diagnostics(client().store, list(run_ids)),
        poll,
    )


def finish(cluster, study, timeout: float):
    return wait_study(cluster["workers"], client(), study, timeout)


def pace(cluster) -> Pace:
    return cluster["pace"]


def redelivery(cluster) -> float:
    """A dead worker's message comes back after its visibility timeout and the restore sweep."""
    visibility = float(cluster["env"]["ABLATE_VISIBILITY_TIMEOUT"])
    return visibility + min(10, visibility // 10)


def running_epoch(store, run_id: str, at_least: int):
    status = read_status(store, run_id)
    return status if status and status.state == "running" and status.epoch >= at_least else None


def trainer(workers: Workers, worker: str | None) -> int | None:
    """The `ablate worker` (its pid) whose pool process trained a run (`host:pid` in status)."""
    owner = workers.owner_of(int(worker.rsplit(":", 1)[1])) if worker else None
    return owner.pid if owner else None


def keep_two_workers(workers: Workers) -> None:
    workers.keep(2)


def still_consumes(cluster, process, event: str, seed: int, cold: bool = False) -> None:
    """After `event`, `process` alone consumes the queue for a moment and trains a fresh tiny
    run (its seed unique to the event: run identity is the config, not the study name); `cold`
    when its pool process was replaced, whose first run loads TensorFlow."""
    spec = tiny(f"after {event}", epochs=2, seeds=[seed])
    deadline = pace(cluster).deadline(epochs=2, cold=cold)
    takes_new_work(cluster["workers"], client(), process, spec, deadline, event)


def test_worker_killed_mid_run_is_redelivered_and_resumes(cluster):
    workers = cluster["workers"]
    c = client()
    study = submit_fresh(c, tiny("killed", epochs=60))
    (run_id,) = study.run_ids
    status = wait_for(
        cluster,
        lambda: running_epoch(c.store, run_id, 3),
        pace(cluster).deadline(epochs=3),
        "epoch 3",
        [run_id],
    )
    victim = workers.owner_of(int(status.worker.rsplit(":", 1)[1]))
    assert victim is not None
    workers.kill(victim)  # the whole worker: parent and pool process
    victim.wait()
    killed_at = read_status(c.store, run_id).epoch
    keep_two_workers(workers)

    final = finish(
        cluster, study, pace(cluster).deadline(epochs=60, cold=True, extra=redelivery(cluster))
    )
    assert final.counts["succeeded"] == 1, final
    metrics = RunMetrics.model_validate(c.store.get_json(f"runs/{run_id}/metrics.json"))
    assert [h.epoch for h in metrics.history] == list(range(1, 61))
    assert metrics.attempt == 2
    assert (
        metrics.resumed_from_epoch is not None
        and killed_at - 1 <= metrics.resumed_from_epoch <= killed_at + 1
    )
    assert [k for k in c.store.list(f"runs/{run_id}/") if k.endswith("metrics.json")] == [
        f"runs/{run_id}/metrics.json"
    ]
    # the worker that took the redelivered message goes on taking new work
    resumer = trained_by(workers, c, run_id)
    assert resumer is not None and resumer is not victim
    still_consumes(cluster, resumer, "a redelivery", seed=5001)


def test_a_duplicate_delivery_is_deferred_while_the_lease_is_live(cluster):
    c = client()
    mark = cluster["workers"].mark()
    study = submit_fresh(c, tiny("duplicated", epochs=30))
    (run_id,) = study.run_ids
    status = read_status(c.store, run_id)
    run = c.plan(tiny("duplicated", epochs=30)).runs[run_id]
    wait_for(
        cluster,
        lambda: running_epoch(c.store, run_id, 1),
        pace(cluster).deadline(epochs=1),
        "the run to start",
        [run_id],
    )
    # the same message again, as a broker would redeliver it
    make_celery(get_settings()).send_task(
        TRAIN_TASK,
        kwargs={
            "run": run.model_dump(mode="json"),
            "study_id": study.study_id,
            "store": c.store.url,
        },
        queue=get_settings().queue,
        task_id=status.task_id,
    )
    lease = float(cluster["env"]["ABLATE_LEASE_SECONDS"])
    assert (
        finish(cluster, study, pace(cluster).deadline(epochs=30, extra=lease)).counts["succeeded"]
        == 1
    )
    wait_for(
        cluster,
        lambda: "run is training elsewhere, deferred" in cluster["workers"].text(),
        pace(cluster).deadline(extra=lease),
        "the deferral",
        [run_id],
    )
    logs = cluster["workers"].text()
    trained = [line for line in logs.splitlines() if '"run succeeded"' in line and run_id in line]
    assert len(trained) == 1
    # the worker that deferred the duplicate goes on taking new work
    deferring = cluster["workers"].logged("run is training elsewhere, deferred", mark)
    assert deferring
    for index, process in enumerate(deferring):
        still_consumes(cluster, process, f"a lease deferral by worker {index}", seed=5010 + index)


def test_a_run_that_kills_its_worker_fails_after_the_attempt_cap(cluster):
    c = client()
    spec = tiny("crashing", epochs=2, model={"factory": "killer:build"})
    mark = cluster["workers"].mark()
    study = submit_fresh(c, spec)
    (run_id,) = study.run_ids
    # three attempts, each killing its pool process: each is a pool process's first run
    final = finish(
        cluster,
        study,
        pace(cluster).deadline(runs=3, workers=1, extra=3 * SLACK * pace(cluster).cold_run_seconds),
    )
    assert final.counts["failed"] == 1, final
    status = read_status(c.store, run_id)
    assert status.attempt == 3
    assert "gave up after 3 attempts" in status.error
    # the study still completes, and its report (written by the worker) marks the run
    summary = wait_for(
        cluster,
        lambda: (
            c.store.exists(f"studies/{study.study_id}/report/summary.json")
            and c.store.get_json(f"studies/{study.study_id}/report/summary.json")
        ),
        pace(cluster).deadline(),
        "the report",
        [run_id],
    )
    assert summary["partial"] is True
    assert any("failed" in note and run_id[:12] in note for note in summary["notes"])
    # every worker that lost a pool process to the run goes on taking new work
    lost = cluster["workers"].logged("signal 9 (SIGKILL)", mark)
    assert lost, cluster["workers"].text(since=mark)[-4000:]
    for index, process in enumerate(lost):
        event = f"a killed pool process in worker {index}"
        still_consumes(cluster, process, event, seed=5020 + index, cold=True)


def test_nan_loss_is_diverged_and_not_retried(cluster):
    c = client()
    spec = tiny(
        "diverging",
        epochs=3,
        optimizer={"name": "sgd", "learning_rate": 10.0, "momentum": 0.9},
        dataset={"kind": "digits", "scale": "none"},
        model={
            "conv_blocks": [{"filters": 8, "activation": "leaky_relu", "pooling": "none"}],
            "dense": [16],
            "dense_activation": "leaky_relu",
        },
    )
    study = submit_fresh(c, spec)
    assert finish(cluster, study, pace(cluster).deadline(epochs=3)).counts["diverged"] == 1
    status = read_status(c.store, study.run_ids[0])
    assert status.attempt == 1 and status.diverged_epoch == 1
    # nothing retried it: once the broker holds no message (queued, unacknowledged or due for
    # a retry after the lease), the run still has its one attempt
    broker = cluster["redis"].client()
    queue = cluster["env"]["ABLATE_QUEUE"]
    time.sleep(float(cluster["env"]["ABLATE_LEASE_SECONDS"]))  # a retry would be sent by now
    wait_for(
        cluster,
        lambda: broker.llen(queue) == 0 and broker.hlen("unacked") == 0,
        pace(cluster).deadline(),
        "an idle broker",
        study.run_ids,
    )
    assert read_status(c.store, study.run_ids[0]).attempt == 1


def test_sigterm_hands_the_running_run_back_and_another_worker_resumes_it(cluster):
    workers = cluster["workers"]
    keep_two_workers(workers)
    c = client()
    study = submit_fresh(c, tiny("sigterm", epochs=70))
    (run_id,) = study.run_ids
    status = wait_for(
        cluster,
        lambda: running_epoch(c.store, run_id, 2),
        pace(cluster).deadline(epochs=2),
        "epoch 2",
        [run_id],
    )
    victim = workers.owner_of(int(status.worker.rsplit(":", 1)[1]))
    os.kill(victim.pid, signal.SIGTERM)  # to the parent only, as `docker stop` and Kubernetes do
    # The warm shutdown ends at the next epoch end, long before the run would have finished.
    assert victim.wait(timeout=pace(cluster).deadline(epochs=1)) == 0
    handed_back = read_status(c.store, run_id)
    assert handed_back.state in ("queued", "running") and handed_back.epoch < 70
    final = finish(cluster, study, pace(cluster).deadline(epochs=70, cold=True))
    assert final.counts["succeeded"] == 1, final
    metrics = RunMetrics.model_validate(c.store.get_json(f"runs/{run_id}/metrics.json"))
    assert [h.epoch for h in metrics.history] == list(range(1, 71))
    assert (
        metrics.attempt == 2
        and metrics.resumed_from_epoch is not None
        and metrics.resumed_from_epoch >= 2
    )
    assert "run handed back: the worker is shutting down" in workers.text()
    keep_two_workers(workers)


def test_a_run_over_the_time_limit_fails_with_the_reason_and_the_worker_goes_on(cluster):
    c = client()
    study = submit_fresh(c, tiny("too long", epochs=5000))  # far beyond ABLATE_RUN_TIME_LIMIT
    limit = float(cluster["env"]["ABLATE_RUN_TIME_LIMIT"])
    (run_id,) = study.run_ids
    wait_for(
        cluster,
        lambda: running_epoch(c.store, run_id, 1),
        pace(cluster).deadline(epochs=1),
        "training",
        [run_id],
    )
    stopped = trained_by(cluster["workers"], c, run_id)  # while its pool process lives
    assert stopped is not None
    final = finish(cluster, study, pace(cluster).deadline(epochs=1, extra=limit))
    assert final.counts["failed"] == 1, final
    status = wait_for(  # the worker states the reason just after the run stops
        cluster,
        lambda: (
            (found := read_status(c.store, study.run_ids[0]))
            and "exceeded the run time limit" in found.error
            and found
        ),
        pace(cluster).deadline(),
        "the reason",
        study.run_ids,
    )
    assert (
        f"exceeded the run time limit of {limit:.0f}s" in status.error and 0 < status.epoch < 5000
    )
    # the worker whose run was stopped goes on taking new work
    spec = tiny("after the limit", epochs=4)
    deadline = pace(cluster).deadline(epochs=4, cold=True)  # if the hard limit replaced its process
    takes_new_work(cluster["workers"], c, stopped, spec, deadline, "a time-limit stop")


def test_redis_restarted_mid_study_loses_no_run(cluster):
    keep_two_workers(cluster["workers"])
    c = client()
    study = submit_fresh(c, tiny("redis restart", epochs=15, seeds=4))
    wait_for(
        cluster,
        lambda: any(running_epoch(c.store, r, 2) for r in study.run_ids),
        pace(cluster).deadline(epochs=2),
        "training",
        study.run_ids,
    )
    cluster["redis"].stop()  # SIGTERM: the AOF is flushed
    time.sleep(3)
    cluster["redis"].start()  # same port and data directory
    final = finish(
        cluster, study, pace(cluster).deadline(epochs=15, runs=4, extra=redelivery(cluster))
    )
    assert final.counts["succeeded"] == 4, final
    for run_id in study.run_ids:
        metrics = RunMetrics.model_validate(c.store.get_json(f"runs/{run_id}/metrics.json"))
        assert [h.epoch for h in metrics.history] == list(range(1, 16))

    # Both workers reconnected and take new work: neither sits connected but idle.
    after = submit_fresh(c, tiny("after the restart", epochs=16, seeds=6))
    assert (
        finish(cluster, after, pace(cluster).deadline(epochs=16, runs=6)).counts["succeeded"] == 6
    )
    trainers = {trainer(cluster["workers"], read_status(c.store, r).worker) for r in after.run_ids}
    assert None not in trainers and len(trainers) == 2, (
        f"runs after the restart trained by {trainers}:\n{cluster['workers'].text()[-4000:]}"
    )


def test_s3_down_for_ten_seconds_mid_run_and_the_run_completes(cluster):
    c = client()
    study = submit_fresh(c, tiny("s3 outage", epochs=40))
    (run_id,) = study.run_ids
    wait_for(
        cluster,
        lambda: running_epoch(c.store, run_id, 2),
        pace(cluster).deadline(epochs=2),
        "training",
        [run_id],
    )
    proxy = cluster["proxy"]
    proxy.down()
    timer = threading.Timer(10.0, proxy.up)
    timer.start()
    timer.join()
    # the outage, and the store's retries after it (backing off up to 10 s between tries)
    final = finish(cluster, study, pace(cluster).deadline(epochs=40, extra=10 + 30))
    assert final.counts["succeeded"] == 1, final
    metrics = RunMetrics.model_validate(c.store.get_json(f"runs/{run_id}/metrics.json"))
    assert [h.epoch for h in metrics.history] == list(range(1, 41))


def test_settings_refuse_a_visibility_timeout_shorter_than_a_run():
    with pytest.raises(ValueError, match="ABLATE_VISIBILITY_TIMEOUT"):
        Settings(run_time_limit=3600, visibility_timeout=3000)

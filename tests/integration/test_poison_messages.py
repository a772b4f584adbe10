"""Poison messages against a real redis-server and a real `ablate worker`: every message the
worker cannot read or validate is rejected (dropped, logged with its reason, counted) and the
worker goes on to train the next real run."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from service.client import AblationClient
from service.queue import TRAIN_TASK, make_celery
from service.settings import get_settings
from tests.cluster import Workers, takes_new_work, wait_study
from tests.conftest import REPO, TINY
from tests.redis_server import RedisServer
from tests.waits import wait_until
from workers.transport import REJECTED_COUNTER


def _envelope(queue: str, body: str, encoding: str = "base64", **extra) -> bytes:
    envelope = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "body_encoding": encoding,
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
        },
        **extra,
    }
    return json.dumps(envelope).encode()


def _raw_messages(queue: str) -> dict[str, bytes]:
    """What an attacker (or a broken producer) pushes straight onto the queue's Redis list."""
    celery_body = base64.b64encode(json.dumps([[], {}, {}]).encode()).decode()
    return {
        "not JSON": b"this is not JSON {",
        "not UTF-8": b"\xff\xfe\x00garbage",
        "JSON list": b"[1, 2, 3]",
        "JSON string": b'"hello"',
        "empty object": b"{}",
        "properties not a mapping": json.dumps({"body": "", "properties": "x"}).encode(),
        "body not base64": _envelope(queue, "%%% not base64 %%%"),
        "body a number": _envelope(queue, 12345),
        "headers a list": _envelope(queue, celery_body, headers=[1, 2]),
        "compressed": _envelope(queue, celery_body, headers={"compression": "application/x-gzip"}),
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    }


EVIL = """
import pathlib
pathlib.Path(__file__).with_name("imported-on-the-worker").write_text("ran")

def build(config, input_shape, num_classes):
    raise AssertionError("never called")
"""


@pytest.fixture(scope="module")
def worker_env(shared_cluster, tmp_path_factory):
    """One worker on a Redis of its own, shared by the module's tests (neither changes what the
    other asserts: one counts rejected messages, the other a refused factory's failed run), and
    the machine's pace measured by the session's shared cluster."""
    tmp_path = tmp_path_factory.mktemp("poison")
    with (
        RedisServer(tmp_path / "redis") as redis_server,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        env = {
            "ABLATE_BROKER_URL": redis_server.url,
            "ABLATE_STORE": str(tmp_path / "store"),
            "ABLATE_QUEUE": f"poison-{uuid.uuid4().hex[:8]}",
            "ABLATE_DATA_ROOTS": str(tmp_path),
            "PYTHONPATH": f"{tmp_path / 'plugins'}{os.pathsep}{REPO}",
        }
        (tmp_path / "plugins").mkdir()
        (tmp_path / "plugins" / "evil_models.py").write_text(EVIL)
        monkeypatch.syspath_prepend(str(tmp_path / "plugins"))  # the planner hashes its source
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        workers = Workers(dict(os.environ), tmp_path, count=1)
        try:
            workers.wait_ready()
            yield workers, redis_server, env, tmp_path, shared_cluster["pace"]
        finally:
            workers.stop()
            get_settings.cache_clear()


def test_worker_rejects_poison_messages_and_trains_the_next_run(worker_env):
    workers, redis_server, env, _, pace = worker_env
    queue = env["ABLATE_QUEUE"]
    raw = _raw_messages(queue)
    broker = redis_server.client()
    for message in raw.values():
        broker.lpush(queue, message)
    # Well-formed Celery messages whose fields are hostile: each is refused by the task.
    app = make_celery(get_settings())
    client = AblationClient()
    plan = client.plan(
        {**TINY, "name": "poison-target", "training": {"epochs": 2, "batch_size": 64}}
    )
    ((run_id, run),) = plan.runs.items()
    good_run = run.model_dump(mode="json")
    fields = {
        "study id with a path": (
            {"run": good_run, "study_id": "../../etc/passwd", "store": client.store.url},
            f"{run_id}-{'0' * 12}",
        ),
        "study id too long": (
            {"run": good_run, "study_id": "a" * 5000 + "-0123abcd", "store": client.store.url},
            f"{run_id}-{'0' * 12}",
        ),
        "run id not the config's hash": (
            {"run": good_run, "study_id": plan.study_id, "store": client.store.url},
            f"{'f' * 16}-{'0' * 12}",
        ),
        "run not a mapping": (
            {"run": "rm -rf /", "study_id": plan.study_id, "store": client.store.url},
            f"{run_id}-{'0' * 12}",
        ),
        "another store": (
            {"run": good_run, "study_id": plan.study_id, "store": "s3://elsewhere/x"},
            f"{run_id}-{'0' * 12}",
        ),
    }
    # A readable envelope with malformed Celery headers: Celery's own check drops it.
    broker.lpush(
        queue,
        _envelope(
            queue,
            base64.b64encode(b"[[], {}, {}]").decode(),
            headers={"task": TRAIN_TASK, "id": "x", "eta": {"x": 1}},
        ),
    )
    for kwargs, task_id in fields.values():
        app.send_task(TRAIN_TASK, kwargs=kwargs, queue=queue, task_id=task_id)

    study = client.submit_plan(plan)
    # the worker's first run (TensorFlow's import) after reading every message before it
    final = wait_study(workers, client, study, pace.deadline(epochs=2, cold=True))

    log = workers.text()
    assert final.counts["succeeded"] == 1, log[-4000:]
    assert workers.processes[0].poll() is None, "the worker exited:\n" + log[-4000:]
    assert "Unrecoverable error" not in log
    assert log.count("unreadable message rejected") == len(raw), log[-6000:]
    assert log.count("invalid run message, dropped") == len(fields), log[-6000:]
    assert "Received invalid task message: invalid ETA value" in log
    for reason in (
        "not JSON",
        "not an envelope",
        "not valid base64",
        "compressed",
        "is not a study id",
        "not the hash of the run's config",
        "this worker writes to",
    ):
        assert reason in log, reason

    def counted() -> bool:
        return int(broker.get(REJECTED_COUNTER) or 0) >= len(raw) + len(fields)

    wait_until(counted, pace.deadline(), "the rejected messages to be counted", workers.diagnostics)
    assert int(broker.get(REJECTED_COUNTER)) == len(raw) + len(fields)
    assert broker.llen(queue) == 0
    # every message rejected, the worker goes on taking new work
    fresh = {
        **TINY,
        "name": "after-poison",
        "training": {"epochs": 2, "batch_size": 64},
        "ablation": {"seeds": [4242]},
    }
    deadline = pace.deadline(epochs=2)
    takes_new_work(workers, client, workers.processes[0], fresh, deadline, "rejected messages")


def test_a_worker_refuses_a_factory_it_was_not_allowed_and_runs_none_of_it(worker_env):
    workers, _, _, tmp_path, pace = worker_env
    client = AblationClient()
    spec = {**TINY, "name": "evil-factory", "model": {"factory": "evil_models:build"}}
    final = wait_study(workers, client, client.submit(spec), pace.deadline(cold=True))
    assert final.counts["failed"] == 1, workers.text()[-4000:]
    (run_id,) = client.plan(spec).runs
    status = client.store.get_json(f"runs/{run_id}/status.json")
    assert (
        "'evil_models:build' is not allowed here: ABLATE_FACTORY_MODULES allows none"
        in status["error"]
    )
    assert not (tmp_path / "plugins" / "imported-on-the-worker").exists()
    assert workers.processes[0].poll() is None

"""The Kubernetes manifests against the real tools and services they configure: `kubectl
kustomize` renders them into valid manifests, KEDA's redis-scaler script counts queued and
running runs in a real Redis, and the optional Redis's configuration starts a redis-server that
requires the password. Moved from the unit tests: each runs a binary or a server."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest
import yaml

from service.settings import Settings
from tests.k8s_manifests import (
    K8S,
    K8S_VERSIONS,
    REAL_PASSWORD,
    clear_environment,
    documents,
    find,
    triggers,
    validate,
    worker_env,
)
from tests.waits import FLOOR_SECONDS, wait_until


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Without the shell's ABLATE_* and AWS_* variables and ~/.aws files."""
    return clear_environment(monkeypatch, tmp_path)


# KEDA's redis scaler (pkg/scalers/redis_scaler.go, v2.17) measures a key with this script:
# LLEN for a list (the queue), HLEN for a hash (kombu's `unacked`), 0 for a missing key.
KEDA_REDIS_LENGTH_SCRIPT = """
local listName = KEYS[1]
local listType = redis.call('type', listName).ok
local cmd = {
    zset = 'zcard',
    set = 'scard',
    list = 'llen',
    hash = 'hlen',
    none = 'llen'
}
return redis.call(cmd[listType], listName)
"""


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", [K8S, K8S / "redis"], ids=["main", "redis"])
def test_kubectl_kustomize_renders_valid_manifests(folder):
    done = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    listed = [
        doc
        for name in documents(folder / "kustomization.yaml")[0]["resources"]
        for doc in documents(folder / name)
    ]
    assert len(rendered) == len(listed)
    for doc in rendered:
        validate(doc, K8S_VERSIONS[-1])
    if folder == K8S:
        (main,) = documents(K8S / "kustomization.yaml")
        (image,) = main["images"]
        (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image['newName']}:{image['newTag']}"


def test_keda_triggers_count_queued_and_running_runs_in_a_real_redis(tmp_path, clean_env):
    scaled_object, config, secret = (
        find("ScaledObject"),
        find("ConfigMap", "ablate-config"),
        find("Secret"),
    )
    (worker,) = find("Deployment")["spec"]["template"]["spec"]["containers"]
    from service.queue import TRAIN_TASK, make_celery
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path / "redis", password=REAL_PASSWORD) as server:
        for key, value in worker_env(config, secret, worker, REAL_PASSWORD).items():
            clean_env.setenv(key, value)
        clean_env.setenv("ABLATE_BROKER_URL", server.url)
        settings = Settings()
        app = make_celery(settings)
        redis_client = server.client()

        def keda_sees() -> dict[str, int]:
            # What KEDA's redis scaler reports for each trigger.
            return {
                name: int(
                    redis_client.eval(KEDA_REDIS_LENGTH_SCRIPT, 1, trigger["metadata"]["listName"])
                )
                for name, trigger in triggers(scaled_object).items()
            }

        try:
            assert keda_sees() == {"queued-runs": 0, "running-runs": 0}
            app.send_task(TRAIN_TASK, args=[{"run_id": "0" * 16}])  # as the client queues a run
            assert keda_sees() == {"queued-runs": 1, "running-runs": 0}
            # A worker takes it (acknowledged late, when the run ends).
            taken = []
            with app.connection_for_read() as connection:
                consumer = connection.Consumer(
                    app.amqp.queues[settings.queue],
                    accept=["json"],
                    callbacks=[lambda body, message: taken.append(message)],
                )
                consumer.qos(prefetch_count=1)
                with consumer:
                    connection.drain_events(timeout=10)
                    assert len(taken) == 1
                    assert keda_sees() == {"queued-runs": 0, "running-runs": 1}
                    taken[0].ack()
            assert keda_sees() == {"queued-runs": 0, "running-runs": 0}
        finally:
            app.pool.force_close_all()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_conf_starts_a_redis_that_requires_the_password(tmp_path):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from tests.redis_server import free_port

    text = find("ConfigMap", "redis-config")["data"]["redis.conf"]
    (tmp_path / "data").mkdir()
    (tmp_path / "auth.conf").write_text(
        f"requirepass {REAL_PASSWORD}\n"
    )  # as the init container writes it
    port = free_port()
    text = re.sub(r"(?m)^port .*$", f"port {port}\nbind 127.0.0.1", text)
    text = re.sub(r"(?m)^dir .*$", f"dir {tmp_path / 'data'}", text)
    text = re.sub(r"(?m)^include .*$", f"include {tmp_path / 'auth.conf'}", text)
    (tmp_path / "redis.conf").write_text(text)
    server = subprocess.Popen(
        ["redis-server", str(tmp_path / "redis.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def listening() -> (
            bool
        ):  # a plain socket: redis-py would back off for seconds between its retries
            assert server.poll() is None, "redis-server refused the configuration"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, FLOOR_SECONDS, "redis-server to listen", poll=0.05)
        client = redis.Redis(host="127.0.0.1", port=port, password=REAL_PASSWORD, socket_timeout=2)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        anonymous = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("k", "v")
    finally:
        server.terminate()
        server.wait(timeout=10)

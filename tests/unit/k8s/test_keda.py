"""KEDA's ScaledObject: the workers scale from zero on the queue, the triggers watch the broker's
Redis and count the runs queued and the runs workers hold, scale-in is gentle, and the password
comes from the Secret. (The triggers counting in a real Redis:
tests/integration/test_k8s_services.py.)"""

from __future__ import annotations

from urllib.parse import urlsplit

from service.settings import Settings
from tests.k8s_manifests import (
    REAL_PASSWORD,
    gpus_per_pod,
    triggers,
    worker_env,
    worker_options,
)


def test_scaled_object_scales_the_workers_from_zero_on_the_queue(scaled_object, config):
    spec = scaled_object["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] >= 1
    queued = triggers(scaled_object)["queued-runs"]
    assert queued["metadata"]["listName"] == config["data"]["ABLATE_QUEUE"]
    for trigger in spec["triggers"]:
        # One waiting or running run is enough to wake the workers up from 0.
        assert trigger["metadata"].get("activationListLength", "0") == "0"
    assert len(triggers(scaled_object)) == len(spec["triggers"]), "trigger names must be unique"


def test_triggers_watch_the_brokers_redis(scaled_object, config):
    broker = urlsplit(config["data"]["ABLATE_BROKER_URL"])
    database = broker.path.strip("/") or "0"
    for trigger in scaled_object["spec"]["triggers"]:
        metadata = trigger["metadata"]
        assert trigger["type"] == "redis"
        assert metadata["address"] == f"{broker.hostname}:{broker.port or 6379}"
        assert metadata.get("databaseIndex", "0") == database
        assert (metadata.get("enableTLS", "false") == "true") == (broker.scheme == "rediss")


def test_a_trigger_counts_the_runs_workers_hold(scaled_object, config, secret, worker, clean_env):
    # kombu keeps every delivered, unacknowledged message in one hash; its name is what the
    # "running runs" trigger must read.
    from kombu.transport.redis import Channel

    from service.queue import make_celery

    for key, value in worker_env(config, secret, worker, REAL_PASSWORD).items():
        clean_env.setenv(key, value)
    options = make_celery(Settings()).conf.broker_transport_options
    assert "global_keyprefix" not in options  # it would prefix both keys
    unacked = options.get("unacked_key", Channel.unacked_key)
    assert triggers(scaled_object)["running-runs"]["metadata"]["listName"] == unacked


def test_trigger_targets_are_the_runs_one_worker_trains(scaled_object, worker):
    runs_per_pod = worker_options(worker)["runs_per_gpu"] * gpus_per_pod(worker)
    for trigger in scaled_object["spec"]["triggers"]:
        assert int(trigger["metadata"]["listLength"]) == runs_per_pod, trigger["name"]


def test_scale_in_is_gentle_and_scale_to_zero_waits(scaled_object):
    spec = scaled_object["spec"]
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    # Each worker removed hands its runs back at an epoch end: remove them one at a time, on a
    # wish that has held for several polls.
    assert scale_down["stabilizationWindowSeconds"] >= 10 * spec["pollingInterval"]
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in scale_down["policies"])
    assert spec["cooldownPeriod"] >= 300  # KEDA's default; a cold start pulls a large image


def test_trigger_authentication_reads_the_redis_password_from_the_secret(
    scaled_object, trigger_auth, secret
):
    for trigger in scaled_object["spec"]["triggers"]:
        assert trigger["authenticationRef"]["name"] == trigger_auth["metadata"]["name"]
        assert (
            trigger["authenticationRef"].get("kind", "TriggerAuthentication")
            == "TriggerAuthentication"
        )
    (reference,) = trigger_auth["spec"]["secretTargetRef"]
    assert reference["parameter"] == "password"  # the redis scaler's authentication parameter
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] == "ABLATE_REDIS_PASSWORD"
    assert reference["key"] in secret["stringData"]

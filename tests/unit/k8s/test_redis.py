"""The optional Redis (infra/k8s/redis): durable, never evicting, its password from the Secret,
the compose stack's image, and the Service the broker URL names. (A redis-server started with
its configuration: tests/integration/test_k8s_services.py.)"""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from tests.k8s_manifests import (
    COMPOSE,
    find,
)


def redis_conf() -> dict[str, str]:
    text = find("ConfigMap", "redis-config")["data"]["redis.conf"]
    lines = [
        line.split(None, 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {key: value.strip() for key, value in lines}


def test_optional_redis_is_durable_and_never_evicts(redis_sts):
    conf = redis_conf()
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"
    (container,) = redis_sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = redis_sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == conf["dir"]  # the AOF lives on the volume
    assert container["command"][-1].startswith(mounts["config"])
    # maxmemory below the memory limit: Redis refuses writes before it is OOM-killed.
    limit = container["resources"]["limits"]["memory"]
    assert conf["maxmemory"].endswith("mb") and limit.endswith("Gi")
    assert int(conf["maxmemory"][:-2]) < int(limit[:-2]) * 1024


def test_optional_redis_takes_its_password_from_the_secret(redis_sts, secret):
    pod = redis_sts["spec"]["template"]["spec"]
    conf = redis_conf()
    for container in [*pod["initContainers"], *pod["containers"]]:
        references = [
            item["valueFrom"]["secretKeyRef"]
            for item in container.get("env", [])
            if "valueFrom" in item
        ]
        assert references == [
            {"name": secret["metadata"]["name"], "key": "ABLATE_REDIS_PASSWORD"}
        ], container["name"]
    (init,) = pod["initContainers"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert conf["include"].startswith(init_mounts["auth"] + "/")
    assert "requirepass" in init["command"][-1]
    assert not any(
        "requirepass" in arg
        for c in pod["containers"]
        for arg in c.get("command", []) + c.get("args", [])
    )


def test_optional_redis_runs_the_compose_stacks_image(redis_sts):
    compose_image = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]["image"]
    pod = redis_sts["spec"]["template"]["spec"]
    assert {c["image"] for c in [*pod["initContainers"], *pod["containers"]]} == {compose_image}


def test_broker_url_names_the_optional_redis_service(config, redis_sts, namespace):
    service = find("Service", "redis")
    broker = urlsplit(config["data"]["ABLATE_BROKER_URL"])
    assert (
        broker.hostname
        == f"{service['metadata']['name']}.{namespace['metadata']['name']}.svc.cluster.local"
    )
    assert broker.port == service["spec"]["ports"][0]["port"]
    assert redis_sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert (
        service["spec"]["selector"].items()
        <= redis_sts["spec"]["template"]["metadata"]["labels"].items()
    )

"""The Kubernetes manifests (infra/k8s), checked without a cluster.

Every manifest validates against the Kubernetes JSON schemas (kubernetes-validate, offline: the
schemas ship inside the package; a test proves no connection is opened). kubernetes-validate
has no schema for custom resources: for KEDA's ScaledObject and TriggerAuthentication it raises
SchemaNotFoundError, which its command line only prints as a warning. Those two are validated
against KEDA_SCHEMAS below instead, written from KEDA's CRDs (keda.sh/v1alpha1) and the redis
scaler's documented parameters, and the kustomizations against a schema of the fields they use.

Then the pieces are checked against each other and against the code: settings that load into
`Settings` (and a Secret template that production refuses), labels and names that tie the
Deployment, the PodDisruptionBudget, the ScaledObject and the Secret together, a command that
`ablate worker` accepts, probes that are the image's HEALTHCHECK and ping the node name the GPU
supervisor gives the worker, a preStop hook that signals PID 1 once and waits, and KEDA triggers
that count queued and running runs in a real Redis exactly as KEDA's redis scaler does.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version
from pydantic import ValidationError

from service.settings import PLACEHOLDER_SECRETS, Settings
from tests.conftest import REPO

K8S = REPO / "infra" / "k8s"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "infra" / "compose.yaml"
MANIFESTS = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))
# The oldest Kubernetes the README's walkthrough claims, and the newest schemas the package has.
K8S_VERSIONS = ("1.30", latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
# A password that is not a placeholder: production settings accept it.
REAL_PASSWORD = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
# The seconds every worker gets to stop warm, in compose (stop_grace_period) and here: an epoch
# of a small CNN on a GPU takes seconds to a minute and its checkpoint is megabytes, so two
# minutes is the floor for "finish the epoch, upload its checkpoint, requeue the run".
MIN_GRACE_SECONDS = 120
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


# -- KEDA and kustomize schemas ------------------------------------------------------------------

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "maxLength": 253}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "additionalProperties": False,
    "properties": {"name": _NAME, "namespace": _NAME, "labels": _STRING_MAP, "annotations": _STRING_MAP},
}
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_DIGITS = {"type": "string", "pattern": r"^[0-9]+$"}
_BOOL_STRING = {"enum": ["true", "false"]}
_HPA_RULES = {  # autoscaling/v2 HPAScalingRules, which KEDA passes to the HPA it creates
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
# The redis scaler's trigger metadata (keda.sh/docs/2.15/scalers/redis-lists): every value is a
# string (the CRD types metadata as map[string]string), names outside this list are not read.
_REDIS_METADATA = {
    "type": "object",
    "required": ["listName"],
    "propertyNames": {
        "enum": [
            "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
            "usernameFromEnv", "passwordFromEnv", "listName", "listLength",
            "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex",
        ]
    },
    "properties": {
        "address": {"type": "string", "pattern": r"^[^\s:/]+:[0-9]+$"},
        "listName": {"type": "string", "minLength": 1},
        "listLength": _DIGITS,
        "activationListLength": _DIGITS,
        "databaseIndex": _DIGITS,
        "enableTLS": _BOOL_STRING,
        "unsafeSsl": _BOOL_STRING,
    },
}
_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string"},
        "name": {"type": "string"},
        "metadata": _STRING_MAP,
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": _NAME, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
        },
    },
    "if": {"properties": {"type": {"const": "redis"}}},
    "then": {"properties": {"metadata": _REDIS_METADATA}},
}
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": _NAME,
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": {**_INT32, "minimum": 1},
                    "cooldownPeriod": _INT32,
                    "initialCooldownPeriod": _INT32,
                    "idleReplicaCount": _INT32,
                    "minReplicaCount": _INT32,
                    "maxReplicaCount": {**_INT32, "minimum": 1},
                    "fallback": {
                        "type": "object",
                        "required": ["failureThreshold", "replicas"],
                        "additionalProperties": False,
                        "properties": {"failureThreshold": _INT32, "replicas": _INT32},
                    },
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "scalingModifiers": {"type": "object"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "name": _NAME,
                                    "behavior": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES},
                                    },
                                },
                            },
                        },
                    },
                    "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {
                    "enum": [
                        "secretTargetRef", "env", "configMapTargetRef", "podIdentity",
                        "hashiCorpVault", "azureKeyVault", "awsSecretManager", "gcpSecretManager",
                        "boundServiceAccountToken",
                    ]
                },
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {"parameter": {"type": "string"}, "name": _NAME, "key": {"type": "string"}},
                        },
                    }
                },
            },
        },
    },
}
KUSTOMIZATION_SCHEMA = {  # the part of kustomize's Kustomization these files use
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "resources": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "newName": {"type": "string"}, "newTag": {"type": "string"}},
            },
        },
    },
}


# -- loading -------------------------------------------------------------------------------------


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str | None = None) -> dict:
    found = [
        doc
        for path in MANIFESTS
        for doc in documents(path)
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} under infra/k8s, found {len(found)}"
    return found[0]


@pytest.fixture
def namespace() -> dict:
    return find("Namespace")


@pytest.fixture
def config() -> dict:
    return find("ConfigMap", "ablate-config")


@pytest.fixture
def secret() -> dict:
    return find("Secret")


@pytest.fixture
def deployment() -> dict:
    return find("Deployment")


@pytest.fixture
def worker(deployment) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture
def pdb() -> dict:
    return find("PodDisruptionBudget")


@pytest.fixture
def scaled_object() -> dict:
    return find("ScaledObject")


@pytest.fixture
def trigger_auth() -> dict:
    return find("TriggerAuthentication")


@pytest.fixture
def redis_sts() -> dict:
    return find("StatefulSet", "redis")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Without the shell's ABLATE_* and AWS_* variables and ~/.aws files."""
    for key in [k for k in os.environ if k.startswith(("ABLATE_", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def worker_env(config: dict, secret: dict, worker: dict, password: str) -> dict[str, str]:
    """The worker container's environment: the ConfigMap, the Secret (with `password`), `env`."""
    env = {**config["data"], **secret["stringData"], "ABLATE_REDIS_PASSWORD": password}
    env.update({item["name"]: item["value"] for item in worker.get("env", [])})
    return env


def worker_argv(worker: dict) -> list[str]:
    return [*worker.get("command", []), *worker.get("args", [])]


def worker_options(worker: dict) -> dict:
    """`ablate worker`'s parsed options, as its click command parses the manifest's arguments."""
    from service.cli import cli

    argv = worker_argv(worker)
    assert argv[:2] == ["ablate", "worker"], argv
    return cli.commands["worker"].make_context("worker", argv[2:]).params


def dockerfile() -> str:
    return re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())


def dockerfile_instruction(keyword: str) -> str:
    (args,) = [line.split(None, 1)[1] for line in dockerfile().splitlines() if line.startswith(f"{keyword} ")]
    return args.strip()


def gpus_per_pod(worker: dict) -> int:
    return int(worker["resources"]["limits"]["nvidia.com/gpu"])


def triggers(scaled_object: dict) -> dict[str, dict]:
    return {trigger["name"]: trigger for trigger in scaled_object["spec"]["triggers"]}


# -- schemas -------------------------------------------------------------------------------------


def validate(doc: dict, version: str) -> None:
    """One manifest against its schema: Kubernetes', KEDA's or kustomize's."""
    if doc["kind"] in KEDA_KINDS:
        jsonschema.Draft202012Validator(KEDA_SCHEMAS[doc["kind"]]).validate(doc)
    elif doc["kind"] == "Kustomization":
        jsonschema.Draft202012Validator(KUSTOMIZATION_SCHEMA).validate(doc)
    else:
        # strict: unknown fields (a misspelt key) are errors, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_file_is_found():
    names = {str(p.relative_to(K8S)) for p in MANIFESTS}
    assert {"kustomization.yaml", "worker.yaml", "keda.yaml", "secret.example.yaml", "redis/redis.yaml"} <= names


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_against_its_schema_offline(path, version, no_network):
    docs = documents(path)
    assert docs, f"{path} holds no manifest"
    for doc in docs:
        validate(doc, version)


def test_kubernetes_validate_has_no_schema_for_keda_resources(scaled_object, trigger_auth):
    # Why KEDA_SCHEMAS exist: kubernetes-validate knows only the built-in kinds.
    for doc in (scaled_object, trigger_auth):
        with pytest.raises(SchemaNotFoundError):
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_kubernetes_schemas_catch_mistakes(deployment, pdb):
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 300  # misspelt
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, K8S_VERSIONS[-1])
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = "60"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, K8S_VERSIONS[-1])
    broken = copy.deepcopy(pdb)
    broken["kind"] = "PodDisruptionBudgets"
    with pytest.raises(SchemaNotFoundError):
        validate(broken, K8S_VERSIONS[-1])


@pytest.mark.parametrize(
    "mistake",
    [
        lambda so: so["spec"]["triggers"][0]["metadata"].update(listLength=2),  # not a string
        lambda so: so["spec"]["triggers"][0]["metadata"].update(queueName="ablate"),  # not redis'
        lambda so: so["spec"]["triggers"][0]["metadata"].pop("listName"),
        lambda so: so["spec"].update(cooldownPeriods=600),
        lambda so: so["spec"]["scaleTargetRef"].pop("name"),
        lambda so: so["spec"].update(minReplicaCount=-1),
        lambda so: so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"].update(
            stabilizationWindowSeconds=7200
        ),
    ],
    ids=["int-metadata", "unknown-redis-key", "no-list-name", "unknown-field", "no-target", "negative-min", "window-too-long"],
)
def test_keda_schema_catches_mistakes(scaled_object, mistake):
    broken = copy.deepcopy(scaled_object)
    mistake(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, K8S_VERSIONS[-1])


def test_trigger_authentication_schema_catches_mistakes(trigger_auth):
    broken = copy.deepcopy(trigger_auth)
    broken["spec"]["secretTargetRef"][0].pop("key")
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, K8S_VERSIONS[-1])


# -- kustomize -----------------------------------------------------------------------------------

KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_exactly_the_manifests_beside_it(path):
    (kustomization,) = documents(path)
    beside = {
        p.name
        for p in path.parent.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != path.name and not p.name.endswith(".example.yaml")
    }
    assert sorted(kustomization["resources"]) == sorted(beside)


def test_secret_template_and_optional_redis_are_not_applied_by_default():
    (main,) = documents(K8S / "kustomization.yaml")
    assert "secret.example.yaml" not in main["resources"]  # never overwrite the real Secret
    assert not any(r.startswith("redis") for r in main["resources"])


def test_kustomization_maps_the_workers_image(worker):
    (main,) = documents(K8S / "kustomization.yaml")
    names = [image["name"] for image in main.get("images", [])]
    assert worker["image"] in names, "the images: entry must name the container's image"
    # The name the Dockerfile's own usage line builds.
    assert f"docker build -t {worker['image']} ." in DOCKERFILE.read_text()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", [K8S, K8S / "redis"], ids=["main", "redis"])
def test_kubectl_kustomize_renders_valid_manifests(folder):
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    listed = [doc for name in documents(folder / "kustomization.yaml")[0]["resources"] for doc in documents(folder / name)]
    assert len(rendered) == len(listed)
    for doc in rendered:
        validate(doc, K8S_VERSIONS[-1])
    if folder == K8S:
        (main,) = documents(K8S / "kustomization.yaml")
        (image,) = main["images"]
        (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image['newName']}:{image['newTag']}"


# -- settings ------------------------------------------------------------------------------------


def test_every_ablate_variable_is_a_setting(config, secret, worker):
    names = [*config["data"], *secret["stringData"], *(item["name"] for item in worker.get("env", []))]
    ablate = [name for name in names if name.startswith("ABLATE_")]
    assert {"ABLATE_STORE", "ABLATE_BROKER_URL", "ABLATE_QUEUE", "ABLATE_REDIS_PASSWORD"} <= set(ablate)
    for name in ablate:
        field = name.removeprefix("ABLATE_").lower()
        assert field in Settings.model_fields, f"{name} is not a field of service.settings.Settings"


def test_worker_environment_loads_into_production_settings(config, secret, worker, clean_env):
    for key, value in worker_env(config, secret, worker, REAL_PASSWORD).items():
        clean_env.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.log_format == "json"
    assert settings.store.startswith("s3://")
    assert settings.queue == config["data"]["ABLATE_QUEUE"]
    assert settings.redis_password.get_secret_value() == REAL_PASSWORD


def test_production_refuses_the_secret_templates_password(config, secret, worker, clean_env):
    template_password = secret["stringData"]["ABLATE_REDIS_PASSWORD"]
    for key, value in worker_env(config, secret, worker, template_password).items():
        clean_env.setenv(key, value)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()


def test_secret_template_holds_placeholders_only(secret):
    assert secret["metadata"]["name"] == "ablate-secrets"
    assert set(secret["stringData"]) == {"ABLATE_REDIS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for key, value in secret["stringData"].items():
        assert value.lower() in PLACEHOLDER_SECRETS, f"{key}: commit placeholders, never secrets"
    assert "data" not in secret  # base64 would hide what is committed


def boto3_environment_variables() -> set[str]:
    import botocore.configprovider
    import botocore.credentials

    names = {
        botocore.credentials.EnvProvider.ACCESS_KEY,
        botocore.credentials.EnvProvider.SECRET_KEY,
        *botocore.credentials.EnvProvider.TOKENS,
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    }
    for _, env_names, _, _ in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values():
        names.update([env_names] if isinstance(env_names, str) else env_names or [])
    return names


def test_aws_variables_are_ones_boto3_reads(config, secret, worker, clean_env):
    import boto3

    env = worker_env(config, secret, worker, REAL_PASSWORD)
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    assert aws.keys() <= boto3_environment_variables()
    for key, value in aws.items():
        clean_env.setenv(key, value)
    client = boto3.session.Session().client("s3")
    assert client.meta.endpoint_url == aws["AWS_ENDPOINT_URL_S3"]
    assert client.meta.region_name == aws["AWS_DEFAULT_REGION"]


# -- the worker Deployment -----------------------------------------------------------------------


def test_everything_lives_in_the_namespace(namespace):
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] not in ("Namespace", "Kustomization"):
                assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], f"{path}: {doc['kind']}"


def test_labels_tie_the_deployment_pdb_and_scaled_object_together(deployment, pdb, scaled_object):
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert pdb["spec"]["selector"] == {"matchLabels": selector}
    target = scaled_object["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == deployment["kind"]
    assert target.get("apiVersion", "apps/v1") == deployment["apiVersion"]
    # KEDA owns the replica count: re-applying the manifests must not reset it.
    assert "replicas" not in deployment["spec"]


def test_worker_reads_the_configmap_and_the_secret(worker, config, secret):
    sources = worker["envFrom"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources


def test_worker_command_is_accepted_by_ablate_worker(worker):
    # click parses the manifest's arguments exactly as `ablate worker` will (options it does not
    # know, or values out of range, raise here).
    params = worker_options(worker)
    assert params["runs_per_gpu"] == 2
    assert params["hostname"]


def test_one_gpu_per_pod_on_gpu_nodes(worker, deployment):
    resources = worker["resources"]
    # Extended resources: a request, if given, must equal the limit.
    assert resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"]) == resources["limits"]["nvidia.com/gpu"]
    assert gpus_per_pod(worker) == 1  # KEDA scales pods, so one pod = one GPU
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in tolerations)


def test_probes_run_the_images_health_check_against_this_worker(worker):
    from workers.gpus import Gpu, worker_hostname

    healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").partition(" CMD ")[2])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == healthcheck, probe
    # The ping's --destination is the node name `ablate worker` gives this pod's one GPU worker.
    command = shlex.split(healthcheck[2].split("||")[0])
    destination = command[command.index("--destination") + 1]
    gpu = Gpu(index=0, name="NVIDIA H100 80GB HBM3", memory_mb=81559)
    node = worker_hostname(gpu, worker_options(worker)["hostname"], gpus_per_pod(worker))
    assert node.replace("%h", "$HOSTNAME") == destination
    # kubelet must not cut the probe off before Celery's own reply timeout.
    ping_timeout = float(command[command.index("--timeout") + 1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["timeoutSeconds"] > ping_timeout + 5, probe


def test_liveness_rides_out_a_redis_restart(worker):
    # The ping goes through Redis: a liveness probe quicker than a Redis restart would restart
    # every worker (and cost every running run its epoch) whenever Redis restarts.
    liveness = worker["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 300


def duration_seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)(h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(int(n) * units[u] for n, u in parts)


def test_grace_period_lets_running_runs_checkpoint(deployment, config):
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    compose_grace = duration_seconds(yaml.safe_load(COMPOSE.read_text())["services"]["worker"]["stop_grace_period"])
    assert grace >= max(MIN_GRACE_SECONDS, compose_grace)
    # ... and a worker SIGKILLed after it leaves its runs unacknowledged until the visibility
    # timeout: the grace period must be far below it to be worth waiting for.
    assert grace < int(config["data"]["ABLATE_VISIBILITY_TIMEOUT"]) / 10


def test_stop_signal_is_sigterm():
    # The kubelet sends the image's STOPSIGNAL after the preStop hook: the same warm shutdown.
    assert dockerfile_instruction("STOPSIGNAL") == "SIGTERM"


TERM_COUNTER = """
import signal, sys, time
count = 0
def on_term(*_):
    global count
    count += 1
    print("term", flush=True)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while not count:
    time.sleep(0.01)
time.sleep(1.5)  # the warm shutdown: finishing the epoch, uploading the checkpoint
print(f"signals={count}", flush=True)
"""


def test_pre_stop_hook_signals_pid_1_once_and_waits_for_it_to_exit(worker):
    argv = worker["lifecycle"]["preStop"]["exec"]["command"]
    assert argv[:2] == ["/bin/sh", "-c"]
    script = argv[2]
    assert len(re.findall(r"kill -(?:TERM|15) 1\b", script)) == 1
    # Run the hook against a stand-in for PID 1 that counts SIGTERMs and takes 1.5 s to stop.
    target = subprocess.Popen([sys.executable, "-c", TERM_COUNTER], stdout=subprocess.PIPE, text=True)
    hook = None
    try:
        assert target.stdout.readline().strip() == "ready"
        hook = subprocess.Popen(["/bin/sh", "-c", re.sub(r"(kill -\w+) 1\b", rf"\1 {target.pid}", script)])
        assert target.stdout.readline().strip() == "term"
        time.sleep(0.5)
        assert hook.poll() is None, "the hook returned while PID 1 was still shutting down"
        target.wait(timeout=10)
        assert hook.wait(timeout=10) == 0
        assert target.stdout.read().strip() == "signals=1"
    finally:
        for process in (target, hook):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_worker_runs_locked_down_and_writes_only_to_its_volumes(deployment, worker):
    pod = deployment["spec"]["template"]["spec"]
    uid = int(dockerfile_instruction("USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["automountServiceAccountToken"] is False
    context = worker["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    # What the worker writes: temporary files, its home (Keras, matplotlib, CUDA caches) and the
    # dataset cache. Each must lie on a writable volume.
    useradd = next(line for line in dockerfile().splitlines() if "useradd" in line and "--create-home" in line)
    user = useradd.split()[-1]
    env = {item["name"]: item["value"] for item in worker.get("env", [])}
    needed = ["/tmp", f"/home/{user}", env["ABLATE_DATASET_CACHE"]]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    writable = [m["mountPath"] for m in worker["volumeMounts"] if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]]
    for path in needed:
        assert any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in writable), path


def test_the_cuda_jit_cache_outlives_the_pod(deployment, worker):
    pod = deployment["spec"]["template"]["spec"]
    cache = next(line.split("=", 1)[1].split()[0] for line in dockerfile().splitlines() if "CUDA_CACHE_PATH=" in line)
    (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == cache]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    (pvc,) = [doc for doc in documents(K8S / "cuda-cache.yaml") if doc["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod
    assert not mount.get("readOnly")


def restricted_violations(pod: dict) -> list[str]:
    """What the "restricted" Pod Security Standard refuses in a pod spec."""
    problems = []
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}")
    problems += [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_context = pod.get("securityContext", {})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name, context = container["name"], container.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities")
    return problems


def test_pods_meet_the_restricted_pod_security_standard(namespace, deployment, redis_sts):
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for owner in (deployment, redis_sts):
        assert restricted_violations(owner["spec"]["template"]["spec"]) == [], owner["metadata"]["name"]
    # The check itself refuses what the standard refuses.
    loose = copy.deepcopy(deployment["spec"]["template"]["spec"])
    del loose["containers"][0]["securityContext"]["capabilities"]
    loose["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(loose)) == 2


# -- KEDA ----------------------------------------------------------------------------------------


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


def test_trigger_authentication_reads_the_redis_password_from_the_secret(scaled_object, trigger_auth, secret):
    for trigger in scaled_object["spec"]["triggers"]:
        assert trigger["authenticationRef"]["name"] == trigger_auth["metadata"]["name"]
        assert trigger["authenticationRef"].get("kind", "TriggerAuthentication") == "TriggerAuthentication"
    (reference,) = trigger_auth["spec"]["secretTargetRef"]
    assert reference["parameter"] == "password"  # the redis scaler's authentication parameter
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] == "ABLATE_REDIS_PASSWORD"
    assert reference["key"] in secret["stringData"]


def test_keda_triggers_count_queued_and_running_runs_in_a_real_redis(tmp_path, scaled_object, config, secret, worker, clean_env):
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
                name: int(redis_client.eval(KEDA_REDIS_LENGTH_SCRIPT, 1, trigger["metadata"]["listName"]))
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
                    app.amqp.queues[settings.queue], accept=["json"], callbacks=[lambda body, message: taken.append(message)]
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


# -- the optional Redis --------------------------------------------------------------------------


def redis_conf() -> dict[str, str]:
    text = find("ConfigMap", "redis-config")["data"]["redis.conf"]
    lines = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
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
        references = [item["valueFrom"]["secretKeyRef"] for item in container.get("env", []) if "valueFrom" in item]
        assert references == [{"name": secret["metadata"]["name"], "key": "ABLATE_REDIS_PASSWORD"}], container["name"]
    (init,) = pod["initContainers"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert conf["include"].startswith(init_mounts["auth"] + "/")
    assert "requirepass" in init["command"][-1]
    assert not any("requirepass" in arg for c in pod["containers"] for arg in c.get("command", []) + c.get("args", []))


def test_optional_redis_runs_the_compose_stacks_image(redis_sts):
    compose_image = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]["image"]
    pod = redis_sts["spec"]["template"]["spec"]
    assert {c["image"] for c in [*pod["initContainers"], *pod["containers"]]} == {compose_image}


def test_broker_url_names_the_optional_redis_service(config, redis_sts, namespace):
    service = find("Service", "redis")
    broker = urlsplit(config["data"]["ABLATE_BROKER_URL"])
    assert broker.hostname == f"{service['metadata']['name']}.{namespace['metadata']['name']}.svc.cluster.local"
    assert broker.port == service["spec"]["ports"][0]["port"]
    assert redis_sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= redis_sts["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_conf_starts_a_redis_that_requires_the_password(tmp_path):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from tests.redis_server import free_port

    text = find("ConfigMap", "redis-config")["data"]["redis.conf"]
    (tmp_path / "data").mkdir()
    (tmp_path / "auth.conf").write_text(f"requirepass {REAL_PASSWORD}\n")  # as the init container writes it
    port = free_port()
    text = re.sub(r"(?m)^port .*$", f"port {port}\nbind 127.0.0.1", text)
    text = re.sub(r"(?m)^dir .*$", f"dir {tmp_path / 'data'}", text)
    text = re.sub(r"(?m)^include .*$", f"include {tmp_path / 'auth.conf'}", text)
    (tmp_path / "redis.conf").write_text(text)
    server = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # a plain socket: redis-py would back off for seconds between its retries
            assert server.poll() is None, "redis-server refused the configuration"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client = redis.Redis(host="127.0.0.1", port=port, password=REAL_PASSWORD, socket_timeout=2)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("k", "v")
    finally:
        server.terminate()
        server.wait(timeout=10)

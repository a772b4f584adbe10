"""The Kubernetes manifests (infra/k8s) as the tests read them: where they are, each document
by kind and name, the worker container's environment and arguments, and `validate`, which checks
one manifest against its schema: Kubernetes' own (kubernetes-validate, offline: the schemas ship
inside the package), or, for what kubernetes-validate has no schema for (KEDA's custom resources,
kustomize's Kustomization), the JSON schemas in tests/unit/k8s/schemas/.

Used by the unit tests under tests/unit/k8s/ and the integration tests that render the manifests
with kubectl or run what they configure (tests/integration/test_k8s_services.py).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.conftest import REPO

K8S = REPO / "infra" / "k8s"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "infra" / "compose.yaml"
MANIFESTS = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))
# The oldest Kubernetes the README's walkthrough claims, and the newest schemas the package has.
K8S_VERSIONS = ("1.30", latest_version())
SCHEMAS = REPO / "tests" / "unit" / "k8s" / "schemas"
# The kinds kubernetes-validate has no schema for, and the JSON schema each is checked against.
SCHEMA_FILES = {
    "ScaledObject": "keda-scaledobject.json",
    "TriggerAuthentication": "keda-triggerauthentication.json",
    "Kustomization": "kustomization.json",
}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
# A password that is not a placeholder: production settings accept it.
REAL_PASSWORD = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


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


def clear_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Without the shell's ABLATE_* and AWS_* variables and ~/.aws files."""
    for key in [k for k in os.environ if k.startswith(("ABLATE_", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


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
    (args,) = [
        line.split(None, 1)[1]
        for line in dockerfile().splitlines()
        if line.startswith(f"{keyword} ")
    ]
    return args.strip()


def gpus_per_pod(worker: dict) -> int:
    return int(worker["resources"]["limits"]["nvidia.com/gpu"])


def triggers(scaled_object: dict) -> dict[str, dict]:
    return {trigger["name"]: trigger for trigger in scaled_object["spec"]["triggers"]}


@functools.cache
def schema(kind: str) -> dict:
    """The JSON schema (tests/unit/k8s/schemas/) of a kind kubernetes-validate does not know."""
    return json.loads((SCHEMAS / SCHEMA_FILES[kind]).read_text())


def validate(doc: dict, version: str) -> None:
    """One manifest against its schema: Kubernetes', KEDA's or kustomize's."""
    if doc["kind"] in SCHEMA_FILES:
        jsonschema.Draft202012Validator(schema(doc["kind"])).validate(doc)
    else:
        # strict: unknown fields (a misspelt key) are errors, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)

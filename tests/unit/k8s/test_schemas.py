"""Every manifest under infra/k8s validates against its schema, offline: Kubernetes' own JSON
schemas (kubernetes-validate, which ships them), and for what it has no schema for (KEDA's
ScaledObject and TriggerAuthentication, for which it raises SchemaNotFoundError and its command
line only warns) the JSON schemas in schemas/, written from KEDA's CRDs and the redis scaler's
documented parameters; the kustomizations against a schema of the fields they use. Each schema
also catches the mistakes it is there for."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.k8s_manifests import (
    K8S,
    K8S_VERSIONS,
    MANIFESTS,
    documents,
    validate,
)


def test_every_manifest_file_is_found():
    names = {str(p.relative_to(K8S)) for p in MANIFESTS}
    assert {
        "kustomization.yaml",
        "worker.yaml",
        "keda.yaml",
        "secret.example.yaml",
        "redis/redis.yaml",
    } <= names


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
        lambda so: so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
            "scaleDown"
        ].update(stabilizationWindowSeconds=7200),
    ],
    ids=[
        "int-metadata",
        "unknown-redis-key",
        "no-list-name",
        "unknown-field",
        "no-target",
        "negative-min",
        "window-too-long",
    ],
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

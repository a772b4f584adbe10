"""The kustomizations: each lists exactly the manifests beside it, the Secret template and the
optional Redis are not applied by default, and the workers' image is the one the Dockerfile
builds. (Rendering them with kubectl: tests/integration/test_k8s_services.py.)"""

from __future__ import annotations

import pytest

from tests.k8s_manifests import (
    DOCKERFILE,
    K8S,
    documents,
)

KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_exactly_the_manifests_beside_it(path):
    (kustomization,) = documents(path)
    beside = {
        p.name
        for p in path.parent.iterdir()
        if p.suffix in (".yaml", ".yml")
        and p.name != path.name
        and not p.name.endswith(".example.yaml")
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

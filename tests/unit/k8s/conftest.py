"""Fixtures of the Kubernetes manifest tests: each manifest document by kind, an environment
without the shell's settings, and a network that refuses every connection."""

from __future__ import annotations

import socket

import pytest

from tests.k8s_manifests import clear_environment, find


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
    return clear_environment(monkeypatch, tmp_path)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

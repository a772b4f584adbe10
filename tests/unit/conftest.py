"""Fixtures shared by the unit tests: an environment without the shell's settings, for the tests
of the worker image (test_infra_dockerfile.py) and of the compose stack (test_infra_compose.py).
The Kubernetes manifest tests have their own, in tests/unit/k8s/conftest.py."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Without the shell's ABLATE_* and AWS_* variables and ~/.aws files."""
    for key in [k for k in os.environ if k.startswith(("ABLATE_", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch

"""The worker cluster that integration modules share: two `ablate worker` processes on the
machine's Redis (a queue of their own), a bucket in the session's S3 server, started once per
session instead of once per module.

Modules that use it (distributed, load) only submit studies and read what the workers stored
and logged; they neither kill workers nor change settings. Each tells its own work apart by its
study's run ids and by `Workers.mark()` in the logs. Tests that kill workers, restart Redis or
need other settings (faults, security, poison messages) keep clusters of their own.

The session fixture does not leave its environment patched (other tests read the defaults):
`cluster_env` applies it for one module at a time.
"""

from __future__ import annotations

import os
import uuid

import boto3
import pytest

from service.settings import get_settings
from tests.cluster import Workers, calibrate
from tests.conftest import use_s3_endpoint

BROKER = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def shared_cluster(s3_server, tmp_path_factory):
    """{"env", "bucket", "store", "queue", "broker", "workers", "pace"} of the shared cluster."""
    bucket = f"ablate-shared-{uuid.uuid4().hex[:12]}"
    env = {
        "ABLATE_STORE": f"s3://{bucket}/results",
        "ABLATE_QUEUE": f"shared-{uuid.uuid4().hex[:10]}",
        "ABLATE_BROKER_URL": BROKER,
        "ABLATE_DATASET_CACHE": str(tmp_path_factory.mktemp("cache")),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_s3_endpoint(monkeypatch, s3_server)
        boto3.client("s3").create_bucket(Bucket=bucket)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        env = dict(os.environ)  # the S3 variables too
    workers = Workers(env, tmp_path_factory.mktemp("shared-logs"))
    cluster = {
        "env": env,
        "bucket": bucket,
        "store": env["ABLATE_STORE"],
        "queue": env["ABLATE_QUEUE"],
        "broker": BROKER,
        "workers": workers,
    }
    try:
        workers.wait_ready()
        with _applied(env):
            from service.client import AblationClient

            cluster["pace"] = calibrate(workers, AblationClient())
        print(f"shared cluster pace: {cluster['pace']}")
        yield cluster
    finally:
        workers.stop()


@pytest.fixture(scope="module")
def cluster_env(shared_cluster):
    """The shared cluster, with its environment applied to this process for one module."""
    with _applied(shared_cluster["env"]):
        yield shared_cluster


class _applied:
    """The cluster's environment in os.environ (and fresh settings) until exit."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.patch = pytest.MonkeyPatch()

    def __enter__(self) -> None:
        for name in [n for n in os.environ if n.startswith(("ABLATE_", "AWS_"))]:
            self.patch.delenv(name)
        for name, value in self.env.items():
            if name.startswith(("ABLATE_", "AWS_")):
                self.patch.setenv(name, value)
        get_settings.cache_clear()

    def __exit__(self, *exc: object) -> None:
        self.patch.undo()
        get_settings.cache_clear()

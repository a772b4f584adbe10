"""Credentials in URLs, in every form, never reach a terminal or a log: a Redis password in the
broker URL's userinfo or in its query string (`?password=`, which also used to stop `ablate
worker` with a TypeError), and credentials in an S3 endpoint URL (userinfo, or a token in the
query) quoted by botocore's errors. Real processes, against ports where nothing listens."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO, TINY
from tests.redis_server import free_port

SECRET = "hunter2-Sup3rS3cret"
OTHER = "0therS3cretT0ken"


def _env(tmp_path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABLATE_", "AWS_"))}
    env.update(
        PYTHONPATH=str(REPO),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        ABLATE_STORE_OUTAGE_SECONDS="0",
        **values,
    )
    return env


def _ablate(tmp_path, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )


def _assert_clean(output: str) -> None:
    assert SECRET not in output and OTHER not in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0?password={secret}",
        "redis://default:{secret}@127.0.0.1:{port}/0",
        "redis://:{secret}@127.0.0.1:{port}/0?password={other}",
        "redis://127.0.0.1:{port}/0?db=0&password={secret}&socket_timeout=2",
    ],
    ids=["query", "userinfo", "both", "query among others"],
)
def test_submit_prints_no_broker_password(tmp_path, url):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**TINY, "name": "secret-url"}))
    broker = url.format(port=free_port(), secret=SECRET, other=OTHER)
    env = _env(tmp_path, ABLATE_BROKER_URL=broker)
    result = _ablate(tmp_path, env, "submit", "spec.yaml", "--store", str(tmp_path / "store"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot use the broker redis://" in result.stderr and "***" in result.stderr, result.stderr
    _assert_clean(result.stdout + result.stderr)
    assert not (tmp_path / "store" / "studies").exists()


def test_worker_with_a_password_in_the_query_starts_and_leaks_nothing(tmp_path):
    env = _env(tmp_path, ABLATE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0?password={SECRET}",
               ABLATE_STORE=str(tmp_path / "store"), ABLATE_LOG_LEVEL="debug")
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--gpus", "none", "-l", "debug"],
        cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Cannot connect to" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    output = log.read_text()
    assert "worker on redis://:***@127.0.0.1" in output, output[-3000:]
    assert "Cannot connect to" in output, output[-3000:]  # it runs, retrying the broker
    _assert_clean(output)


@pytest.mark.parametrize(
    "endpoint",
    ["http://admin:{secret}@127.0.0.1:{port}", "http://127.0.0.1:{port}/?X-Amz-Security-Token={secret}",
     "http://{secret}@127.0.0.1:{port}"],
    ids=["userinfo", "token in query", "user-only token"],
)
def test_store_errors_quote_no_endpoint_credentials(tmp_path, endpoint):
    url = endpoint.format(secret=SECRET, port=free_port())
    env = _env(tmp_path, AWS_ENDPOINT_URL_S3=url, ABLATE_LOG_LEVEL="debug")
    result = _ablate(tmp_path, env, "status", "any-" + "0" * 32, "--store", "s3://ablate-secret-test/x")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "127.0.0.1" in result.stderr, result.stderr
    _assert_clean(result.stdout + result.stderr)

"""Shared fixtures: tiny specs that train in seconds on two CPU cores, the session's S3 server,
and this machine's measured pace for tests that wait on `ablate` processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

# Helper modules whose asserts check results: rewritten like a test's, so a failure shows values.
pytest.register_assert_rewrite("tests.spec_fuzzing", "tests.diagnosis_cases", "tests.diagnose_planning")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "dataset": {"kind": "digits", "validation_split": 0.1, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 8}], "dense": [16]},
    "optimizer": {"name": "adam", "learning_rate": 0.005},
    "training": {"epochs": 3, "batch_size": 64},
    "ablation": {"seeds": 1},
}


# --- order: the longest modules first ------------------------------------------------------------

LONGEST_FIRST = (
    "integration/test_faults.py",
    "e2e/test_diagnose_real.py",
    "integration/test_load.py",
    "e2e/test_diagnosis_bench.py",
    "integration/test_gpu_packing_bench.py",
    "e2e/test_staged_diagnosis.py",
    "integration/test_distributed.py",
    "integration/test_gpu_check.py",
    "integration/test_security.py",
    "e2e/test_cli_run.py",
)
"""Modules that took longest (pytest --durations on this 2-core machine), longest first. `make
test` runs the suite on two pytest-xdist workers, a module to a worker in collection order
(`--dist loadfile --no-loadscope-reorder`): started first, a long module runs beside many short
ones instead of alone at the end. The rest keeps its order: integration, end to end, unit."""


def pytest_collection_modifyitems(config, items):
    folders = {"integration": 0, "e2e": 1}

    def rank(item) -> tuple[int, int]:
        path = Path(str(item.fspath)).relative_to(REPO / "tests").as_posix()
        if path in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(path))
        return (1 + folders.get(path.split("/")[0], 2), 0)

    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.fixture
def tiny_spec() -> dict:
    """A deep copy of the tiny study spec, free to modify."""
    return yaml.safe_load(yaml.safe_dump(TINY))


@pytest.fixture
def write_spec(tmp_path):
    def write(data: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


# --- S3: a real S3 server (moto's server mode, a subprocess on loopback) -----------------------


@pytest.fixture(scope="session")
def s3_server_process():
    """The session's moto S3 server (`tests.s3server.S3Server`). Do not stop it from a test:
    start an `S3Server` of your own for outage tests (a restart loses every bucket)."""
    from tests.s3server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(s3_server_process) -> str:
    """The endpoint URL of the session's moto S3 server, e.g. http://127.0.0.1:PORT."""
    return s3_server_process.endpoint


def use_s3_endpoint(monkeypatch, endpoint: str, key_id: str = "testing", secret: str = "testing"):
    """Point boto3 (through its own env variables only) at `endpoint`, isolated from the user's
    AWS profile, config files and tokens."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    missing = str(REPO / "tests" / ".no-such-aws-file")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> str:
    """Env pointing boto3 at the moto server, and a fresh, uniquely named bucket in it.
    Returns the store URL `s3://{bucket}/prefix`."""
    import uuid

    import boto3

    use_s3_endpoint(monkeypatch, s3_server)
    bucket = f"ablate-test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/prefix"


# --- pace: how long `ablate run` takes on this machine now -------------------------------------


@pytest.fixture(scope="session")
def local_pace(tmp_path_factory):
    """This machine's `tests.waits.Pace` for `ablate` processes, measured once a session: one
    tiny run of 2 epochs through `ablate run` in a fresh process (its start-up and TensorFlow's
    import included). Deadlines of tests that wait on `ablate` are derived from it."""
    from service.lifecycle.documents import RunMetrics
    from tests.waits import FLOOR_SECONDS, Pace, run_process

    folder = tmp_path_factory.mktemp("pace")
    spec = {**TINY, "name": "pace", "training": {"epochs": 2, "batch_size": 64},
            "ablation": {"seeds": [10_000]}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "service.cli", "run", str(folder / "spec.yaml"),
               "--store", str(folder / "store")]
    started = time.monotonic()
    done = run_process(command, 5 * FLOOR_SECONDS, "the pace run", cwd=REPO)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stored = (folder / "store").glob("runs/*/metrics.json")
    metrics = [RunMetrics.model_validate_json(path.read_text()) for path in stored]
    assert len(metrics) == 1, done.stdout[-3000:]
    pace = Pace.measure(max(0.0, wall - metrics[0].timings["total_seconds"]), wall, metrics)
    print(f"local pace: {pace}")
    return pace

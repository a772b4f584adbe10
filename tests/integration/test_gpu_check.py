"""bench/gpu_check.py, the check operators run on a GPU host, run here without one: its
--allow-cpu mode goes through every check that a CPU can (fresh training processes, K of them
sharing the cores, each precision option, augmentation under bfloat16, XLA on and off) so the
script cannot rot; without --allow-cpu it refuses with exit 2 and says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def gpu_check(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ABLATE_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_without_a_gpu_it_exits_2_with_tensorflows_reason(tmp_path):
    done = gpu_check("--json", str(tmp_path / "check.json"), timeout=120)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "TensorFlow sees no GPU" in done.stderr
    (preflight,) = json.loads((tmp_path / "check.json").read_text())["checks"]  # written as it went
    assert preflight["check"] == "preflight" and preflight["ok"] is False
    assert preflight["gpus"] == [] and preflight["no_gpu_reason"]
    assert "| preflight | **FAILED** | TensorFlow " in done.stdout


def test_the_cpu_mode_runs_every_check_a_cpu_can(tmp_path):
    out = tmp_path / "check.json"
    done = gpu_check("--allow-cpu", "--quick", "--packing", "off", "--json", str(out), timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = {check["check"]: check for check in json.loads(out.read_text())["checks"]}
    assert list(checks) == [
        "preflight",
        "cold start",
        "memory cap",
        "2 processes on one CPU",
        "precision options",
        "augmentation under bfloat16",
        "XLA on and off",
        "peak memory recorded",
        "packing",
    ]
    ran = {name for name, check in checks.items() if check["ok"] is True}
    assert ran == {
        "preflight",
        "2 processes on one CPU",
        "precision options",
        "augmentation under bfloat16",
        "XLA on and off",
    }
    # Each option as the runner recorded it: on a CPU every policy is float32, no loss scaling.
    rows = checks["precision options"]["rows"]
    assert [row["requested"] for row in rows] == [False, "float16", "bfloat16", True]
    assert all(
        row["recorded"] == row["expected"] == "float32" and not row["loss_scaling"] for row in rows
    )
    assert [(row["requested"], row["recorded"]) for row in checks["XLA on and off"]["rows"]] == [
        (False, False),
        (True, True),
    ]
    assert all(row["compile_seconds"] is not None for row in checks["XLA on and off"]["rows"])
    assert [r["state"] for r in checks["2 processes on one CPU"]["results"]] == [
        "succeeded",
        "succeeded",
    ]
    assert "| check | result | figures |" in done.stdout and "0 failed, written to" in done.stdout

"""bench/gpu_packing.py runs end to end: refused without a GPU, and its whole code path (spawned
training processes, warm-up barrier, packing cells, runner vs bare fit, the tables) exercised by
the tiny `--allow-cpu --quick` version."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }  # no GPU, even on a GPU host
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_packing", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_without_a_gpu_it_says_so_and_trains_nothing():
    done = bench(timeout=60)
    assert done.returncode == 1
    assert "no GPU found" in done.stderr and "--allow-cpu" in done.stderr
    assert "K=" not in done.stdout


@pytest.mark.slow
def test_the_cpu_smoke_run_prints_every_table(tmp_path):
    done = bench(
        "--allow-cpu",
        "--quick",
        "--cells",
        "tiny,heavy",
        "--json",
        str(tmp_path / "packing.json"),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "device: CPU (--allow-cpu)" in out
    assert (
        "| runs per GPU (K) | mixed precision + XLA | runs | runs/hour (median) | spread | vs K=1 |"
        in out
    )
    assert "cell tiny: synthetic 28x28x1" in out and "cell heavy: synthetic 32x32x3" in out
    for k in (1, 2):
        for config, applied in (("off", "float32, xla False"), ("on", "float32, xla True")):
            rows = [
                line
                for line in out.splitlines()
                if line.startswith(f"| {k} | {config} | {k} |") and applied in line
            ]
            assert len(rows) == 2, (k, config)  # one per cell
    assert "(target on one H100: K=8 >= 3x)" in out and "target: >= 0.95, within 5%" in out
    document = json.loads((tmp_path / "packing.json").read_text())
    assert document["device"] == "CPU (--allow-cpu)"
    assert {cell: set(ratios) for cell, ratios in document["packing"].items()} == {
        "tiny": {"off", "on"},
        "heavy": {"off", "on"},
    }
    assert document["runner_vs_bare"] > 0
    cells = [row for row in document["rows"] if not row.get("compare")]
    assert sorted((row["cell"], row["k"], row["config"]) for row in cells) == [
        (cell, k, config) for cell in ("heavy", "tiny") for k in (1, 2) for config in ("off", "on")
    ]
    assert all(row["spread"][0] <= row["runs_per_hour"] <= row["spread"][1] for row in cells)

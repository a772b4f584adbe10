"""`ablate run --jobs 2` on a (pretend) GPU machine: a fake nvidia-smi lists one GPU, so the two
training processes are pinned to it and capped; TensorFlow (real, on this GPU-less machine)
lists no GPU in them, so the command stops with TensorFlow's reason instead of training on the
CPU, and no run is trained or marked failed."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from service.lifecycle.storage import read_status
from service.store import LocalStore
from tests.conftest import REPO, TINY


def test_jobs_on_a_gpu_machine_are_pinned_and_refuse_to_fall_back_to_the_cpu(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-8f1c2d3e, NVIDIA H100 80GB HBM3, 81559'\n")
    smi.chmod(0o755)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                **TINY,
                "name": "local-gpu",
                "training": {"epochs": 1, "batch_size": 64},
                "ablation": {"seeds": 2},
            }
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ABLATE_") and key != "CUDA_VISIBLE_DEVICES"
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "run",
            str(spec),
            "--store",
            str(tmp_path / "store"),
            "--jobs",
            "2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    output = " ".join((done.stdout + done.stderr).split())
    assert "error: CUDA_VISIBLE_DEVICES=0, but TensorFlow" in output and "lists no GPU" in output
    store = LocalStore(tmp_path / "store")
    run_ids = {key.split("/")[1] for key in store.list("runs/")}
    assert len(run_ids) == 2
    assert all(
        read_status(store, run_id) is None or read_status(store, run_id).state == "queued"
        for run_id in run_ids
    )

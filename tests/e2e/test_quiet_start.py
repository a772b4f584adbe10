"""TensorFlow's and CUDA's C++ start-up lines stay off the terminal: `ablate run` and `ablate
report` print none of them, and a process that loads TensorFlow through `workers.quiet_start`
writes none to stderr but keeps them for its debug log (the echo for `-v` is tested in
tests/unit/test_quiet_start.py).

Every subprocess here runs without TF_CPP_MIN_LOG_LEVEL (the test suite's conftest sets it),
as a user's shell would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, TINY

NOISE = re.compile(r"I0000|W0000|E0000|cuda|oneDNN|TF_ENABLE_ONEDNN_OPTS|absl|cpu_feature_guard")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, env={**_env(), **env}, timeout=600
    )


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOISE.search(line)]


def test_ablate_run_and_report_print_no_tensorflow_line(tmp_path):
    spec = {**TINY, "training": {"epochs": 1, "batch_size": 64}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    cli = [sys.executable, "-m", "service.cli"]
    run = _run([*cli, "run", "spec.yaml", "--store", "store"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 runs trained" in run.stdout
    assert _noise(run.stdout + run.stderr) == [], run.stderr

    report = _run([*cli, "report", "tiny", "--store", "store"], tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert _noise(report.stdout + report.stderr) == [], report.stderr


LOAD = (
    "from service.logs import configure_logging; configure_logging('debug', 'json');"
    "from workers import quiet_start; quiet_start.load_tensorflow();"
    "print(len(quiet_start.startup_output().splitlines()))"
)


def test_a_quiet_start_logs_tensorflows_lines_as_one_debug_event_and_nothing_raw(tmp_path):
    done = _run([sys.executable, "-c", LOAD], tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0  # TensorFlow did write its lines, and they were kept
    events = [json.loads(line) for line in done.stderr.splitlines()]  # JSON lines, nothing raw
    (startup,) = [event for event in events if event["event"] == "tensorflow start-up"]
    assert startup["level"] == "debug"  # so the default level (info) shows none of it
    assert _noise(startup["output"])

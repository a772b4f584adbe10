"""Hostile inputs are refused within bounded time and memory: `ablate validate` runs in a fresh
process on each and must exit 2 within a few seconds and a few hundred megabytes (a 10^7-run
grid took minutes and gigabytes; a 200 KB spec of factor keys took 26 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY
from tests.waits import FLOOR_SECONDS, run_process

SECONDS = 3.0
"""CPU time of the validation itself, measured inside the process on a second pass: the CLI's
imports (and a fresh checkout's first compile of them) are not the hostile input's doing, and
CPU time, unlike wall time, does not grow with the machine's load."""
MEGABYTES = 400


def _grid_of_ten_million(tmp: Path) -> Path:
    paths = ["model.dropout", "model.conv_dropout", "model.l2", "training.label_smoothing",
             "augmentation.zoom", "augmentation.translation", "augmentation.contrast"]
    factors = [{"path": path, "values": [round(0.01 * (i + 1), 3) for i in range(10)]} for path in paths]
    return _write(tmp, {**TINY, "ablation": {"strategy": "grid", "seeds": 1, "factors": factors}})


def _many_factor_keys(tmp: Path) -> Path:
    keys = {f"model.key_{index:05d}": index for index in range(12_000)}  # about 200 KB
    path = _write(tmp, {**TINY, "ablation": {"factors": [{"values": [keys]}]}})
    assert path.stat().st_size > 200_000
    return path


def _sparse_3_gb(tmp: Path) -> Path:
    path = tmp / "spec.yaml"
    with path.open("wb") as handle:
        handle.truncate(3 * 10**9)  # sparse: no disk is used, but a reader would get 3 GB
    return path


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "spec.yaml")  # nobody ever writes: a blocking read waits forever
    return tmp / "spec.yaml"


def _long_description(tmp: Path) -> Path:
    return _write(tmp, {**TINY, "description": "x" * 990_000})


def _write(tmp: Path, data: dict) -> Path:
    path = tmp / "spec.json"
    path.write_text(json.dumps(data))
    return path


HOSTILE = {
    "grid of 10^7 runs": (_grid_of_ten_million, "ablation.max_runs: the plan has up to 10000001 runs"),
    "200 KB of factor keys": (_many_factor_keys, "unknown factor path"),
    "3 GB spec": (_sparse_3_gb, "spec.yaml: is 3000000000 bytes, more than the 1000000 allowed"),
    "990 KB description": (_long_description, "description: String should have at most 2000 characters (got 'xxx"),
    "FIFO as the spec": (_fifo, "spec.yaml: is a FIFO (named pipe), not a regular file"),
}


def validate_bounded(spec: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """`ablate validate spec` in a fresh process: (result, seconds, peak megabytes)."""
    # The bounds are measured inside the process (its CPU time and peak memory); the deadline
    # only catches a validation that never ends (a blocking read), whatever the machine's load.
    result = run_process(
        [sys.executable, "-c", _MEASURED, str(spec)],
        FLOOR_SECONDS,
        f"ablate validate {spec.name}",
        cwd=spec.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    measured = result.stdout.strip().splitlines()[-1].split() if result.stdout.strip() else []
    seconds, peak = (float(measured[0]), float(measured[1])) if len(measured) == 2 else (float("nan"),) * 2
    return result, seconds, peak


# Runs the CLI twice (the first pass imports and compiles what validation needs) and prints the
# CPU seconds of the second pass and the process's peak RSS (MB) last, whatever its exit code.
_MEASURED = """
import resource, sys, time
from service.cli import cli
import service.plan, service.spec.load  # imported before the clock starts


def validate():
    try:
        cli.main(["validate", sys.argv[1]], prog_name="ablate", standalone_mode=False)
        return 0
    except SystemExit as exc:
        return exc.code
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3


def peak_mb():
    # VmHWM is this program's own peak: ru_maxrss survives exec, so under a large pytest it would
    # report the parent's size from before the exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


validate()
started = time.process_time()
code = validate()
print(time.process_time() - started, peak_mb())
sys.exit(code)
"""


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_spec_is_refused_in_bounded_time_and_memory(case, tmp_path):
    make, expected = HOSTILE[case]
    spec = make(tmp_path)
    result, seconds, peak = validate_bounded(spec)
    assert result.returncode == 2, result.stderr + result.stdout
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr) < 2000, f"{len(result.stderr)} characters of error: values are echoed uncut"
    assert seconds < SECONDS, f"validate took {seconds:.1f}s"
    assert peak < MEGABYTES, f"validate peaked at {peak:.0f} MB"

"""The GPU supervisor's exit rules, with real child processes standing in for GPU workers."""

from __future__ import annotations

import subprocess
import sys
import time

from workers.gpus import Gpu
from workers.supervisor import Child, supervise

# Like a Celery worker: SIGTERM starts a warm shutdown that ends with exit code 0.
WORKER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(120)"


def child(index: int, code: str) -> Child:
    process = subprocess.Popen([sys.executable, "-c", code])
    return Child(Gpu(index, "fake", 1024), f"gpu{index}@test", None, process)


def test_a_child_stopped_cleanly_on_request_stops_the_others_and_the_supervisor_exits_0():
    started = time.monotonic()
    done = child(0, "pass")
    waiting = child(1, WORKER)
    assert supervise([done, waiting]) == 0
    assert waiting.process.returncode == 0 and time.monotonic() - started < 60  # stopped, not waited out


def test_a_child_that_dies_makes_the_supervisor_fail_with_its_code():
    crashed = child(0, "import sys; sys.exit(3)")
    waiting = child(1, WORKER)
    assert supervise([crashed, waiting]) == 3
    assert waiting.process.returncode == 0

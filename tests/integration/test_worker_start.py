"""A worker that cannot work stops at start-up, non-zero, instead of sitting alive: here one
whose parent process has TensorFlow loaded before it forks its pool (a stand-in module in
sys.modules: the check is by name), on the machine's Redis and a queue of its own."""

from __future__ import annotations

import os
import sys
import uuid

from tests.conftest import REPO
from tests.waits import FLOOR_SECONDS, run_process
from workers.app import TENSORFLOW_IN_PARENT_EXIT_CODE

START_WITH_TENSORFLOW = """
import sys, types
sys.modules["tensorflow"] = types.ModuleType("tensorflow")  # as if imported before the fork
from service.cli import cli
cli.main(["worker", "--gpus", "none", "-c", "1", "-n", sys.argv[1]], prog_name="ablate")
"""


def test_a_worker_with_tensorflow_in_its_parent_exits_at_start_up(tmp_path):
    env = {
        **os.environ,
        "ABLATE_BROKER_URL": "redis://127.0.0.1:6379/0",
        "ABLATE_QUEUE": f"start-{uuid.uuid4().hex[:8]}",
        "ABLATE_STORE": str(tmp_path / "store"),
        "PYTHONPATH": str(REPO),
    }
    name = f"tf-parent-{uuid.uuid4().hex[:6]}@test"
    done = run_process(
        [sys.executable, "-c", START_WITH_TENSORFLOW, name],
        FLOOR_SECONDS,
        "the worker to stop",
        cwd=REPO,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == TENSORFLOW_IN_PARENT_EXIT_CODE, output[-4000:]
    assert "TensorFlow was imported in the Celery parent process before forking" in output
    assert " ready." not in output  # it never started consuming

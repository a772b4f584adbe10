"""`submit --wait` and `status --watch` warn within seconds when no worker consumes the queue
(real Redis on 127.0.0.1:6379, a queue of the test's own that no worker listens on), and the
check finds the shared cluster's real workers on theirs."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/0"
WARNING = "no worker consumes queue"
WITHIN_SECONDS = 8.0
"""From the study's first line to the warning: one check at once, answered within 1.5 s."""


@pytest.fixture
def lonely_queue(tmp_path):
    """(env, spec path) with a queue nobody consumes; its messages are dropped afterwards."""
    name = f"nobody-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "ABLATE_QUEUE": name,
        "ABLATE_BROKER_URL": BROKER,
        "ABLATE_STORE": str(tmp_path / "store"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "name": "lonely"}))
    yield env, spec
    client = redis.Redis.from_url(BROKER)
    client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


def follow(
    command: list[str], env: dict[str, str], until: str, limit: float = 60.0
) -> tuple[list[tuple[float, str]], subprocess.Popen]:
    """Lines (time, text) of `command` (stdout and stderr) up to the first holding `until`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *command],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put((time.monotonic(), line)) for line in process.stdout], daemon=True
    ).start()
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            if until in seen[-1][1]:
                return seen, process
        raise AssertionError(f"no line with {until!r} in {limit}s: {[text for _, text in seen]}")
    finally:
        process.kill()
        process.wait(timeout=10)


def test_submit_wait_warns_within_seconds_that_no_worker_consumes_the_queue(lonely_queue):
    env, spec = lonely_queue
    lines, _ = follow(["submit", str(spec), "--wait"], env, WARNING)
    (started,) = [at for at, text in lines if text.startswith("study ")]
    warned, text = lines[-1]
    assert warned - started < WITHIN_SECONDS, lines
    print(f"warned {warned - started:.2f} s after the study's first line")
    assert f"queue {env['ABLATE_QUEUE']!r}" in text
    assert f"ablate worker --queue {env['ABLATE_QUEUE']}" in text


def test_status_watch_warns_too(lonely_queue):
    env, spec = lonely_queue
    follow(["submit", str(spec)], env, "follow it with")
    started = time.monotonic()
    lines, _ = follow(["status", "lonely", "--watch"], env, WARNING)
    # Python and Celery start-up included: the check itself is the first thing the watch does.
    assert lines[-1][0] - started < WITHIN_SECONDS + 4, lines


def test_the_check_finds_real_workers_on_their_queue(cluster_env):
    from service.queue import make_celery
    from service.queue_watch import queue_consumers
    from service.settings import get_settings

    celery = make_celery(get_settings())
    consuming, answered = queue_consumers(celery, cluster_env["queue"])
    # Other test clusters on this Redis may answer too; only these two consume this queue.
    assert len(consuming) == 2 and set(consuming) <= set(answered)
    nobody, _ = queue_consumers(celery, f"nobody-{uuid.uuid4().hex[:10]}")
    assert nobody == []

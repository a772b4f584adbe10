"""`ablate worker` on a (pretend) GPU machine: a fake nvidia-smi lists two GPUs, and the real
supervisor starts one real Celery worker per GPU on a redis-server of the test's own. What
each worker got is read from outside: its environment (/proc), its node name and pool size
(Celery's remote control). No TensorFlow is imported: no run is sent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.queue import make_celery
from service.settings import Settings
from tests.conftest import REPO
from tests.redis_server import RedisServer
from tests.unit.test_gpus import TWO_GPUS, fake_nvidia_smi
from tests.waits import FLOOR_SECONDS, wait_until
from workers.gpus import PROCESS_OVERHEAD_MB


class Supervisor:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", *args],
            cwd=REPO,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def events(self, name: str) -> list[dict]:
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [event for event in map(json.loads, lines) if event.get("event") == name]

    def tail(self) -> str:
        return f"supervisor log tail:\n{self.log.read_text()[-3000:]}"

    def wait_ready(self, count: int, timeout: float = FLOOR_SECONDS) -> list[dict]:
        def ready() -> bool:
            assert self.process.poll() is None, f"supervisor exited:\n{self.tail()}"
            return self.log.read_text().count(" ready.") >= count

        wait_until(ready, timeout, f"{count} workers to be ready", self.tail)
        return self.events("gpu worker started")

    def wait(self, timeout: float = FLOOR_SECONDS) -> int:
        def exited() -> bool:
            return self.process.poll() is not None

        wait_until(exited, timeout, "the supervisor to exit", self.tail)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def gone(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "Z" in state.split()[1]  # a zombie has exited


def wait_gone(pids: list[int], timeout: float = FLOOR_SECONDS) -> None:
    wait_until(
        lambda: all(gone(pid) for pid in pids),
        timeout,
        f"processes {pids} to exit",
        lambda: f"still running: {[p for p in pids if not gone(p)]}",
        poll=0.1,
    )


@pytest.fixture
def gpu_machine(tmp_path):
    """Env for a machine with two GPUs (fake nvidia-smi first on PATH) and a Redis of its own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir, TWO_GPUS)
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "ABLATE_BROKER_URL": redis_server.url,
            "ABLATE_QUEUE": f"gpu-{uuid.uuid4().hex[:8]}",
            "ABLATE_STORE": str(tmp_path / "store"),
            "ABLATE_LOG_FORMAT": "json",
        }
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.pop("ABLATE_GPU_MEMORY_MB", None)
        supervisors: list[Supervisor] = []

        def start(*args: str) -> Supervisor:
            supervisors.append(Supervisor(env, tmp_path / f"supervisor{len(supervisors)}.log", *args))
            return supervisors[-1]

        start.env = env
        try:
            yield start, redis_server
        finally:
            for supervisor in supervisors:
                supervisor.kill()


def test_one_pinned_worker_per_gpu_each_stopped_warm_by_sigterm(gpu_machine):
    start, redis_server = gpu_machine
    supervisor = start("--runs-per-gpu", "2")
    started = supervisor.wait_ready(2)
    assert [(event["gpu"], event["hostname"]) for event in started] == [
        (0, "gpu0-nvidia-h100-80gb-hbm3@%h"),
        (1, "gpu1-tesla-t4@%h"),
    ]
    pids = [event["pid"] for event in started]
    for pid, (index, memory) in zip(pids, [(0, 81559), (1, 15360)], strict=True):
        env = environ(pid)
        assert env["CUDA_VISIBLE_DEVICES"] == str(index) and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert env["ABLATE_GPU_MEMORY_MB"] == str((memory - 2 * PROCESS_OVERHEAD_MB) // 2)
        assert env["ABLATE_TRAINING_PROCESSES"] == "4"  # two GPUs, two runs each: threads per process

    app = make_celery(Settings(broker_url=redis_server.url))
    stats = app.control.inspect(timeout=5).stats() or {}
    pools = {name.split("@")[0]: info["pool"]["max-concurrency"] for name, info in stats.items()}
    assert pools == {"gpu0-nvidia-h100-80gb-hbm3": 2, "gpu1-tesla-t4": 2}

    os.kill(supervisor.process.pid, signal.SIGTERM)
    assert supervisor.wait() == 0
    wait_gone(pids)
    assert supervisor.log.read_text().count("Warm shutdown") == 2
    assert [event["exit_code"] for event in supervisor.events("gpu worker stopped")] == [0, 0]


def test_a_gpu_worker_that_dies_is_not_restarted_and_the_supervisor_fails(gpu_machine):
    start, _ = gpu_machine
    supervisor = start("--gpus", "0,1")
    pids = [event["pid"] for event in supervisor.wait_ready(2)]
    assert "ABLATE_GPU_MEMORY_MB" not in environ(pids[0])  # one run per GPU: memory growth
    os.killpg(pids[1], signal.SIGKILL)  # the worker of GPU 1 and its pool process
    assert supervisor.wait() == 128 + signal.SIGKILL
    wait_gone(pids)
    (died,) = supervisor.events("gpu worker exited unexpectedly; stopping the others")
    assert died["gpu"] == 1 and died["exit_code"] == -signal.SIGKILL
    assert len(supervisor.events("gpu worker started")) == 2  # nothing restarted


def test_workers_stop_when_the_supervisor_is_killed(gpu_machine):
    start, _ = gpu_machine
    supervisor = start("--gpus", "1", "--runs-per-gpu", "1", "--hostname", "ablate@%h")
    (event,) = supervisor.wait_ready(1)
    assert event["hostname"] == "ablate@%h"  # one GPU keeps the given name
    os.kill(supervisor.process.pid, signal.SIGKILL)
    supervisor.process.wait()
    wait_gone([event["pid"]])  # the parent-death signal: a warm shutdown, no orphan


def test_runs_that_do_not_fit_on_a_gpu_start_no_worker(gpu_machine):
    start, _ = gpu_machine
    supervisor = start("--runs-per-gpu", "16")
    assert supervisor.wait() == 2
    text = supervisor.log.read_text()
    assert "--runs-per-gpu 16: GPU 1 (Tesla T4, 15360 MiB) leaves 192 MiB per run" in text
    assert supervisor.events("gpu worker started") == []


def test_a_worker_whose_tensorflow_lists_no_gpu_stops_non_zero_and_leaves_the_run_queued(gpu_machine, tiny_spec):
    # nvidia-smi (fake) lists GPUs, TensorFlow (real, on this GPU-less machine) lists none: the
    # CUDA libraries "failed to load". The worker must not train the run on the CPU.
    import redis

    from service.client import AblationClient
    from service.lifecycle.storage import read_status, run_key

    start, redis_server = gpu_machine
    supervisor = start("--gpus", "0")
    supervisor.wait_ready(1)
    queue, store = start.env["ABLATE_QUEUE"], start.env["ABLATE_STORE"]
    client = AblationClient(broker_url=redis_server.url, store_url=store, queue=queue)
    study = client.submit({**tiny_spec, "name": "no-gpu"})
    (run_id,) = study.run_ids
    assert supervisor.wait() == 3  # the worker's exit code, passed on by the supervisor
    text = supervisor.log.read_text()
    assert "this worker cannot train: stopping it" in text
    (stopped,) = [
        e
        for e in map(json.loads, filter(lambda line: line.startswith("{"), text.splitlines()))
        if e.get("event") == "this worker cannot train: stopping it"
    ]
    # TensorFlow's own load error (its C++ log, caught while it listed the GPUs) is the reason.
    assert stopped["error"].startswith("CUDA_VISIBLE_DEVICES=0, but TensorFlow ")
    # (the first of its load lines: a quiet start keeps "Could not find cuda drivers", written
    # before "failed call to cuInit")
    assert re.search(r"lists no GPU: (failed call to cuInit|Could not find cuda drivers)", stopped["error"])
    (died,) = supervisor.events("gpu worker exited unexpectedly; stopping the others")
    assert died["exit_code"] == 3
    status = read_status(client.store, run_id)
    assert (status.state, status.attempt, status.worker) == ("queued", 0, None)  # untouched
    assert client.store.list(run_key(run_id, "checkpoints/")) == []
    broker = redis.Redis.from_url(redis_server.url)
    waiting = broker.llen(queue) + broker.hlen("unacked")
    assert waiting == 1  # the message is kept for a worker that can train it

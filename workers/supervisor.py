"""`ablate worker` on a GPU machine: one Celery worker process per GPU, supervised.

Each GPU gets its own `ablate worker` child, pinned with CUDA_VISIBLE_DEVICES, with `--runs-per-gpu`
pool processes and the per-process memory cap in its environment (`workers.gpus`). The supervisor
imports neither Celery's worker nor TensorFlow; it only starts, watches and stops the children:

- SIGTERM or SIGINT: forwarded to every child as SIGTERM (Celery's warm shutdown: each running
  run stops at its next epoch end and goes back on the queue); a second signal forwards SIGQUIT
  (cold shutdown).
- The runs per GPU must fit: each process's cap plus its CUDA context (`workers.gpus`), else
  nothing starts. A worker whose TensorFlow lists no GPU, or refuses its cap, exits non-zero at
  its first run (`workers.process_setup`), and so does the supervisor (below).
- A child that exits cleanly on its own (`celery control shutdown`) stops the others warm, and
  the supervisor exits 0. A child that dies is never restarted silently: it is logged, the
  others are shut down warm, and the supervisor exits non-zero so that the container or
  service restarts.
- The children live in process sessions of their own (a terminal's Ctrl-C reaches only the
  supervisor, so each child gets exactly one signal) and die with the supervisor (Linux
  parent-death signal, SIGTERM), so a killed supervisor leaves no orphaned worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from workers.gpus import Gpu, memory_limit_mb, worker_env, worker_hostname

log = structlog.get_logger(__name__)
POLL_SECONDS = 0.2


@dataclass
class Child:
    gpu: Gpu
    hostname: str
    memory_mb: int | None
    process: subprocess.Popen


def child_command(queue: str, runs_per_gpu: int, hostname: str, loglevel: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.cli",
        "worker",
        "--gpu-child",
        f"--queue={queue}",
        f"--concurrency={runs_per_gpu}",
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
    ]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux for a SIGTERM when the supervisor dies.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_children(
    gpus: list[Gpu],
    runs_per_gpu: int,
    queue: str,
    hostname: str | None,
    loglevel: str,
    configured_memory_mb: int | None,
    env: Mapping[str, str] | None = None,
) -> list[Child]:
    env = os.environ if env is None else env
    # Every GPU's cap before any worker starts: runs that do not fit are refused, not started.
    caps = [memory_limit_mb(gpu, runs_per_gpu, configured_memory_mb) for gpu in gpus]
    children = []
    for gpu, memory_mb in zip(gpus, caps, strict=True):
        name = worker_hostname(gpu, hostname, len(gpus))
        process = subprocess.Popen(
            child_command(queue, runs_per_gpu, name, loglevel),
            env=worker_env(gpu, runs_per_gpu, memory_mb, env, len(gpus) * runs_per_gpu),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        children.append(Child(gpu, name, memory_mb, process))
        log.info(
            "gpu worker started",
            gpu=gpu.index,
            device=gpu.device,
            gpu_name=gpu.name,
            hostname=name,
            pid=process.pid,
            runs_per_gpu=runs_per_gpu,
            memory_limit_mb=memory_mb,
        )
    return children


def supervise(children: list[Child]) -> int:
    """Wait for the children; forward SIGTERM/SIGINT; return the exit code for the supervisor."""
    signals: list[int] = []

    def forward(signum: int, _frame) -> None:
        signals.append(signum)
        # First signal: warm shutdown; any further one: cold shutdown.
        sent = signal.SIGTERM if len(signals) == 1 else signal.SIGQUIT
        log.info("stopping gpu workers", signal=signal.Signals(signum).name, sent=sent.name)
        _send(children, sent)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _watch(children, signals)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(children: list[Child], signals: list[int]) -> int:
    failed: Child | None = None
    stopping = False  # a child stopped cleanly on request: the others are being stopped too
    running = list(children)
    while running:
        time.sleep(POLL_SECONDS)
        for child in list(running):
            code = child.process.poll()
            if code is None:
                continue
            running.remove(child)
            if signals or stopping:
                log.info(
                    "gpu worker stopped",
                    gpu=child.gpu.index,
                    hostname=child.hostname,
                    exit_code=code,
                )
                if code != 0 and failed is None:
                    failed = child
            elif code == 0:
                # A clean stop asked of the worker itself (`celery control shutdown`): stop all.
                stopping = True
                log.info(
                    "gpu worker stopped on request; stopping the others",
                    gpu=child.gpu.index,
                    hostname=child.hostname,
                )
                _send(running, signal.SIGTERM)
            elif failed is None:
                # Not asked to stop: a crash, an out-of-memory kill, or someone killed it.
                failed = child
                log.error(
                    "gpu worker exited unexpectedly; stopping the others",
                    gpu=child.gpu.index,
                    hostname=child.hostname,
                    pid=child.process.pid,
                    exit_code=code,
                )
                _send(running, signal.SIGTERM)
    if failed is None:
        return 0
    code = failed.process.returncode
    if code is not None and code < 0:
        return 128 - code  # killed by a signal, as a shell reports it
    return code or 1


def _send(children: list[Child], sig: int) -> None:
    for child in children:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, sig)

"""Real `ablate worker` processes for integration tests: started with an environment, stopped
(or killed) by process group, their logs kept in files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import REPO


class Workers:
    """Two `ablate worker` processes consuming one queue, logging to files."""

    def __init__(self, env: dict[str, str], logs: Path, count: int = 2) -> None:
        self.env = env
        self.logs_dir = logs
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        for _ in range(count):
            self.add()

    def add(self) -> subprocess.Popen:
        """Start one more worker (e.g. to replace a killed one)."""
        index = len(self.processes)
        log = self.logs_dir / f"worker{index}.log"
        self.logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--gpus", "none", "-c", "1", "-n", f"w{index}-{uuid.uuid4().hex[:6]}@%h"],
            cwd=REPO,
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def owner_of(self, pid: int) -> subprocess.Popen | None:
        """The worker whose process group holds `pid` (a pool process or the parent)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((p for p in self.processes if p.pid == group), None)

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        os.killpg(process.pid, sig)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [log for p, log in zip(self.processes, self.logs, strict=True) if p.poll() is None]
            if all(" ready." in log.read_text() for log in alive):
                return
            for process, log in zip(self.processes, self.logs, strict=True):
                assert process.returncode is not None or process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError("workers not ready:\n" + "\n".join(log.read_text()[-2000:] for log in self.logs))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def text(self) -> str:
        return "\n".join(log.read_text() for log in self.logs)



"""How many CPU cores a training process may use: the cores the container is given (its CPU
affinity and its cgroup's CPU quota, v2 or v1), shared by the training processes on the
machine. TensorFlow sizes its thread pools to every core of the host otherwise, and K such
processes on one machine each start that many threads: they oversubscribe the cores."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its affinity mask, lowered to its cgroup's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cgroup_quota(cgroup: Path) -> float | None:
    # cgroup v2: "cpu.max" holds "QUOTA PERIOD" or "max PERIOD".
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    # cgroup v1: cpu.cfs_quota_us is -1 without a quota.
    for folder in (cgroup / "cpu", cgroup / "cpu,cpuacct"):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def training_processes(env: Mapping[str, str]) -> int:
    """How many training processes share this machine's cores: ABLATE_TRAINING_PROCESSES (set by
    the GPU supervisor to GPUs × runs per GPU, and by `ablate run` to its jobs), else
    ABLATE_RUNS_PER_GPU, else 1."""
    for name in ("ABLATE_TRAINING_PROCESSES", "ABLATE_RUNS_PER_GPU"):
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def thread_counts(cores: int, processes: int) -> tuple[int, int]:
    """(intra-op, inter-op) threads for each of `processes` processes sharing `cores`. Intra-op
    threads run one op (a convolution) in parallel: the process's share of the cores. Inter-op
    threads run independent ops at once; a small CNN's graph has few, so two at most."""
    intra = max(1, cores // max(1, processes))
    return intra, min(2, intra)

"""Which GPUs this machine has, and how `ablate worker` shares them out.

Read from `nvidia-smi`, never from TensorFlow: the process that asks is the worker's supervisor
(or a Celery parent), and TensorFlow imported there would initialise CUDA before a fork.
Indices are nvidia-smi's (PCI bus order); the workers started for them set
`CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA numbers the GPUs the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from service.errors import AblateError

QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
MEMORY_SHARE = 0.9
"""Of a GPU's memory, the part the runs packed onto it may use together (CUDA's own context,
cuDNN workspaces and the driver need the rest)."""


class GpuSelectionError(AblateError):
    """`--gpus` names a GPU that is not there, or CUDA_VISIBLE_DEVICES cannot be read."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mb: int | None
    """Total memory in MiB; None where nvidia-smi does not report it (`[N/A]`)."""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`;
    lines that are not such rows (warnings, "No devices were found") are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        index, name, memory = int(fields[0]), ",".join(fields[1:-1]).strip(), fields[-1]
        gpus.append(Gpu(index, name, int(float(memory)) if re.fullmatch(r"\d+(\.\d+)?", memory) else None))
    return gpus


def visible_indices(env: Mapping[str, str]) -> list[int] | None:
    """The GPU indices CUDA_VISIBLE_DEVICES allows, in its order; None when it is unset."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    indices: list[int] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        if not re.fullmatch(r"-?\d+", entry):
            raise GpuSelectionError(
                f"CUDA_VISIBLE_DEVICES={value}: ablate worker reads GPU indices (as nvidia-smi "
                "numbers them), not UUIDs; give indices or unset it"
            )
        if int(entry) < 0:
            break  # CUDA stops at the first invalid index: "-1" hides every GPU
        indices.append(int(entry))
    return indices


def detect_gpus(env: Mapping[str, str] | None = None, timeout: float = 20.0) -> list[Gpu]:
    """The GPUs this process may use: nvidia-smi's list, narrowed by CUDA_VISIBLE_DEVICES.
    No nvidia-smi, or nvidia-smi failing (no driver, no device), means no GPU."""
    env = os.environ if env is None else env
    binary = shutil.which("nvidia-smi", path=env.get("PATH"))
    if binary is None:
        return []
    try:
        done = subprocess.run([binary, *QUERY], capture_output=True, text=True, timeout=timeout, env=dict(env))
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    gpus = parse_nvidia_smi(done.stdout)
    allowed = visible_indices(env)
    if allowed is None:
        return gpus
    by_index = {gpu.index: gpu for gpu in gpus}
    return [by_index[index] for index in allowed if index in by_index]


def select_gpus(choice: str, detected: list[Gpu]) -> list[Gpu]:
    """`--gpus`: `auto` (every detected GPU), `none`, or indices such as `0,2`."""
    choice = choice.strip().lower()
    if choice == "auto":
        return list(detected)
    if choice == "none":
        return []
    by_index = {gpu.index: gpu for gpu in detected}
    selected = []
    for entry in (part.strip() for part in choice.split(",")):
        if not entry.isdigit():
            raise GpuSelectionError(f"--gpus {choice}: expected auto, none or GPU indices such as 0,2")
        if int(entry) not in by_index:
            found = ", ".join(str(index) for index in by_index) or "none"
            raise GpuSelectionError(f"--gpus {choice}: GPU {entry} is not visible here (GPUs found: {found})")
        if by_index[int(entry)] not in selected:
            selected.append(by_index[int(entry)])
    return selected


def memory_limit_mb(gpu: Gpu, runs_per_gpu: int, configured_mb: int | None) -> int | None:
    """The memory cap of each run process on `gpu`: ABLATE_GPU_MEMORY_MB when set; with several
    runs per GPU, an equal share of MEMORY_SHARE of the GPU; with one, none (memory growth)."""
    if configured_mb is not None:
        return configured_mb
    if runs_per_gpu <= 1 or gpu.memory_mb is None:
        return None
    return int(gpu.memory_mb * MEMORY_SHARE / runs_per_gpu)


def worker_hostname(gpu: Gpu, hostname: str | None, gpu_count: int) -> str:
    """Celery node name of the worker for `gpu`: `gpu0-<model>@%h` by default. A given
    `--hostname NAME@HOST` is kept as it is for a single GPU (health checks ping it by name),
    and becomes `NAME-gpu0-<model>@HOST` for each of several."""
    if hostname is None:
        return f"gpu{gpu.index}-{gpu.slug}@%h"
    if gpu_count == 1:
        return hostname
    name, at, host = hostname.partition("@")
    return f"{name}-gpu{gpu.index}-{gpu.slug}{at}{host}"


def worker_env(gpu: Gpu, runs_per_gpu: int, memory_mb: int | None, env: Mapping[str, str]) -> dict[str, str]:
    """The environment of the worker process for `gpu`: pinned to it, told its memory cap."""
    child = dict(env)
    child.update(
        CUDA_VISIBLE_DEVICES=str(gpu.index),
        CUDA_DEVICE_ORDER="PCI_BUS_ID",
        ABLATE_RUNS_PER_GPU=str(runs_per_gpu),
    )
    if memory_mb is None:
        child.pop("ABLATE_GPU_MEMORY_MB", None)
    else:
        child["ABLATE_GPU_MEMORY_MB"] = str(memory_mb)
    return child

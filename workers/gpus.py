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

QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
PROCESS_OVERHEAD_MB = 768
"""GPU memory each training process needs outside TensorFlow's allocator, so outside its cap:
the CUDA context with TensorFlow's kernels (lazily loaded) and the cuDNN and cuBLAS handles and
workspaces. NVIDIA puts a context at a few hundred MiB depending on the GPU and driver; this is
a margin above that. `bench/gpu_check.py` measures the real figure on a host (`overhead_mb`)."""
MIN_RUN_MB = 512
"""The smallest cap worth training under: below it K runs do not fit on the GPU."""


class GpuSelectionError(AblateError):
    """`--gpus` names a GPU that is not there, or CUDA_VISIBLE_DEVICES cannot be read."""


class GpuPackingError(AblateError):
    """The runs asked for per GPU do not fit in its memory (or its memory is unknown)."""


class DeviceError(AblateError):
    """A training process cannot train as it was configured to (pinned to a GPU that TensorFlow
    does not list, a memory cap TensorFlow refused). Not the run's fault: the worker stops with
    `exit_code`, the run stays queued for a worker that can train it."""

    exit_code = 3


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mb: int | None
    """Total memory in MiB; None where nvidia-smi does not report it (`[N/A]`, a MIG device)."""
    uuid: str | None = None
    """`GPU-…` (from nvidia-smi), or the `MIG-…` id of a MIG device named in CUDA_VISIBLE_DEVICES."""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"

    @property
    def device(self) -> str:
        """What CUDA_VISIBLE_DEVICES pins this GPU with: a MIG device only by its id."""
        if self.uuid is not None and self.uuid.startswith("MIG-"):
            return self.uuid
        return str(self.index)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`
    (the uuid column optional); lines that are not such rows (warnings, "No devices were
    found") are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        uuid = fields.pop(1) if len(fields) >= 4 and fields[1].startswith("GPU-") else None
        index, name, memory = int(fields[0]), ",".join(fields[1:-1]).strip(), fields[-1]
        memory_mb = int(float(memory)) if re.fullmatch(r"\d+(\.\d+)?", memory) else None
        gpus.append(Gpu(index, name, memory_mb, uuid))
    return gpus


def visible_devices(env: Mapping[str, str]) -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES, in its order, as CUDA reads them: indices, `GPU-…`
    UUIDs (or unique prefixes of them) and `MIG-…` device ids, up to the first invalid entry
    ("-1" hides every GPU); None when it is unset."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries: list[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        if re.fullmatch(r"\d+", entry) or re.fullmatch(r"(GPU|MIG)-[0-9A-Za-z/-]+", entry):
            entries.append(entry)
            continue
        if re.fullmatch(r"-\d+", entry):
            break  # CUDA stops at the first invalid index
        raise GpuSelectionError(
            f"CUDA_VISIBLE_DEVICES={value}: {entry!r} is not a GPU index, a GPU-… UUID or a MIG-… id"
        )
    return entries


def visible_indices(env: Mapping[str, str]) -> list[int] | None:
    """The plain GPU indices of CUDA_VISIBLE_DEVICES (see `visible_devices`)."""
    entries = visible_devices(env)
    return None if entries is None else [int(entry) for entry in entries if entry.isdigit()]


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
    allowed = visible_devices(env)
    if allowed is None:
        return gpus
    chosen: list[Gpu] = []
    for entry in allowed:
        if entry.isdigit():
            found = [gpu for gpu in gpus if gpu.index == int(entry)]
        elif entry.startswith("GPU-"):
            found = [gpu for gpu in gpus if gpu.uuid is not None and gpu.uuid.startswith(entry)]
        else:
            # A MIG device: nvidia-smi's GPU rows describe its parent, not the slice; its memory
            # is unknown here, so several runs on it need ABLATE_GPU_MEMORY_MB.
            found = [Gpu(len(chosen), f"MIG {entry}", None, entry)]
        if len(found) != 1:
            break  # CUDA stops at the first entry it cannot resolve (or an ambiguous prefix)
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


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


def memory_limit_mb(
    gpu: Gpu, runs_per_gpu: int, configured_mb: int | None, overhead_mb: int = PROCESS_OVERHEAD_MB
) -> int | None:
    """The memory cap of each of the `runs_per_gpu` processes on `gpu`, or a `GpuPackingError`
    when they do not fit. Each process needs its cap plus `overhead_mb` (its CUDA context and
    library handles, outside the cap), so the cap is (total − K × overhead) / K; or
    ABLATE_GPU_MEMORY_MB when set (refused when K of it, with the overheads, exceed the GPU).
    One run per GPU without a setting: no cap (memory growth)."""
    where = f"GPU {gpu.device} ({gpu.name}"
    if configured_mb is not None:
        if gpu.memory_mb is not None and runs_per_gpu * (configured_mb + overhead_mb) > gpu.memory_mb:
            raise GpuPackingError(
                f"ABLATE_GPU_MEMORY_MB={configured_mb}: {runs_per_gpu} runs of {configured_mb} MiB, each with "
                f"{overhead_mb} MiB of CUDA context outside the cap, need "
                f"{runs_per_gpu * (configured_mb + overhead_mb)} MiB; {where}) has {gpu.memory_mb} MiB"
            )
        return configured_mb
    if runs_per_gpu <= 1:
        return None
    if gpu.memory_mb is None:
        raise GpuPackingError(
            f"--runs-per-gpu {runs_per_gpu}: the memory of {where}) is not reported (a MIG device?); "
            "set ABLATE_GPU_MEMORY_MB to the cap of each run"
        )
    cap = (gpu.memory_mb - runs_per_gpu * overhead_mb) // runs_per_gpu
    if cap < MIN_RUN_MB:
        fits = max(1, gpu.memory_mb // (MIN_RUN_MB + overhead_mb))
        raise GpuPackingError(
            f"--runs-per-gpu {runs_per_gpu}: {where}, {gpu.memory_mb} MiB) leaves {max(cap, 0)} MiB per run "
            f"after {overhead_mb} MiB of CUDA context per process (at least {MIN_RUN_MB} needed); "
            f"use at most {fits}"
        )
    return cap


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


def worker_env(
    gpu: Gpu, runs_per_gpu: int, memory_mb: int | None, env: Mapping[str, str], training_processes: int | None = None
) -> dict[str, str]:
    """The environment of the worker process for `gpu`: pinned to it, told its memory cap and
    how many training processes share the machine's cores (`workers.cpus`)."""
    child = dict(env)
    child.update(
        CUDA_VISIBLE_DEVICES=gpu.device,
        CUDA_DEVICE_ORDER="PCI_BUS_ID",
        ABLATE_RUNS_PER_GPU=str(runs_per_gpu),
        ABLATE_TRAINING_PROCESSES=str(training_processes or runs_per_gpu),
    )
    if memory_mb is None:
        child.pop("ABLATE_GPU_MEMORY_MB", None)
    else:
        child["ABLATE_GPU_MEMORY_MB"] = str(memory_mb)
    return child


def gpu_expected(env: Mapping[str, str]) -> str | None:
    """Why this process must train on a GPU (the setting that says so), or None. A process is
    pinned when CUDA_VISIBLE_DEVICES names a device (the supervisor sets it), or when
    ABLATE_RUNS_PER_GPU / ABLATE_GPU_MEMORY_MB are set; CUDA_VISIBLE_DEVICES hiding every GPU
    (`--gpus none` sets -1) says the CPU is meant, whatever else is set."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        try:
            devices = visible_devices(env)
        except GpuSelectionError:
            return f"CUDA_VISIBLE_DEVICES={value}"
        return f"CUDA_VISIBLE_DEVICES={value}" if devices else None
    for name in ("ABLATE_RUNS_PER_GPU", "ABLATE_GPU_MEMORY_MB"):
        if env.get(name, "").strip():
            return f"{name}={env[name]}"
    return None


APPS_QUERY = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]


def process_memory_mb(pid: int, env: Mapping[str, str] | None = None, timeout: float = 10.0) -> float | None:
    """The GPU memory the driver reports for process `pid` (MiB): the allocator's pool and the
    CUDA context together. None without nvidia-smi, or where it cannot see the process (a
    container's own PID namespace hides it from the driver's list)."""
    env = os.environ if env is None else env
    binary = shutil.which("nvidia-smi", path=env.get("PATH"))
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *APPS_QUERY], capture_output=True, text=True, timeout=timeout, env=dict(env))
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    total, seen = 0.0, False
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid) and re.fullmatch(r"\d+(\.\d+)?", fields[1]):
            total, seen = total + float(fields[1]), True  # one row per GPU the process uses
    return total if seen else None


def local_placement(
    jobs: int, configured_mb: int | None, env: Mapping[str, str] | None = None
) -> list[dict[str, str | None]]:
    """`ablate run --jobs N`: the environment of each of its N training processes (set before
    TensorFlow loads; None removes a variable). On a machine with GPUs they are spread over the
    GPUs and pinned and capped as `ablate worker` pins and caps its processes (a
    `GpuPackingError` when they do not fit); on a CPU they only learn how many share the cores.
    One job: nothing to share, TensorFlow's defaults."""
    if jobs <= 1:
        return []
    gpus = detect_gpus(env)
    if not gpus:
        return [{"ABLATE_TRAINING_PROCESSES": str(jobs)}] * jobs
    per_gpu = [len(range(index, jobs, len(gpus))) for index in range(len(gpus))]
    caps = [memory_limit_mb(gpu, count, configured_mb) for gpu, count in zip(gpus, per_gpu, strict=False)]
    placement: list[dict[str, str | None]] = []
    for slot in range(jobs):
        index = slot % len(gpus)
        cap = caps[index]
        placement.append({
            "CUDA_VISIBLE_DEVICES": gpus[index].device,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "ABLATE_RUNS_PER_GPU": str(per_gpu[index]),
            "ABLATE_TRAINING_PROCESSES": str(jobs),
            "ABLATE_GPU_MEMORY_MB": None if cap is None else str(cap),
        })
    return placement

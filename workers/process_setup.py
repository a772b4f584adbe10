"""Once per training process, before TensorFlow first touches a device: size its thread pools,
require the GPU it was pinned to, apply its memory cap. What was set goes into metrics.json.

Nothing here degrades quietly. A process pinned to a GPU (`workers.gpus.gpu_expected`) that
TensorFlow does not list (CUDA libraries that failed to load, a driver too old) would train in
float32 on the CPU while holding the GPU; a cap TensorFlow refuses would leave K uncapped
processes competing for one GPU. Both raise a `DeviceError` (with TensorFlow's own load error
where it logged one): the worker stops non-zero and the run stays queued.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import tempfile
from typing import Any

import structlog
import tensorflow as tf

from workers import cpus, quiet_start
from workers.gpus import DeviceError, gpu_expected

log = structlog.get_logger(__name__)
_LOAD_ERROR = re.compile(r"(cuInit|dlopen|dynamic library|cuda drivers|CUDA error|driver version|libcuda)", re.I)

_done: dict[str, Any] | None = None


class GpuUnavailable(DeviceError):
    """The process is pinned to a GPU and TensorFlow lists none."""


class GpuMemoryCapError(DeviceError):
    """A memory cap is asked for and TensorFlow does not apply it."""


def configure_process(env: dict[str, str] | None = None, gpu_memory_mb: int | None = None) -> dict[str, Any]:
    """Threads, the GPU check and the memory policy (a cap of `gpu_memory_mb`,
    ABLATE_GPU_MEMORY_MB, else memory growth), once per process; returns what was set.
    Raises `GpuUnavailable` / `GpuMemoryCapError` (every call, not only the first)."""
    global _done
    if _done is not None:
        return _done
    env = dict(os.environ) if env is None else env
    expected = gpu_expected(env)
    # The listing first: it loads CUDA (so its errors are caught here), and threads can still
    # be set after it, until the runtime starts.
    gpus, load_error = _list_gpus(capture=expected is not None)
    setup = configure_threads(env)
    if expected is not None and not gpus:
        raise GpuUnavailable(
            f"{expected}, but TensorFlow {tf.__version__} lists no GPU: {why_no_gpu(load_error)}. "
            "Refusing to train on the CPU; fix the GPU set-up (bench/gpu_check.py says what is "
            "missing), or hide the GPUs to train on the CPU (ablate worker --gpus none, "
            "CUDA_VISIBLE_DEVICES=-1)"
        )
    setup.update(configure_memory(gpus, gpu_memory_mb))
    _done = setup
    return setup


def configure_threads(env: dict[str, str]) -> dict[str, Any]:
    """Intra- and inter-op threads from the cores the container gives this process and the
    number of training processes sharing them (`workers.cpus`)."""
    cores, processes = cpus.available_cores(), cpus.training_processes(env)
    intra, inter = cpus.thread_counts(cores, processes)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as exc:  # the runtime started first (a test's earlier TensorFlow call)
        log.warning("thread pools not sized: TensorFlow was already initialised", error=str(exc))
    return {
        "cpu_cores_available": cores,
        "training_processes": processes,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or None,
    }


def configure_memory(gpus: list, limit_mb: int | None) -> dict[str, Any]:
    """A logical device capped at `limit_mb` on every GPU (several runs per GPU), or memory
    growth (one run per GPU). A cap that cannot be applied, or that TensorFlow does not report
    back, is a `GpuMemoryCapError`; memory growth that cannot be set is only logged (the
    process then owns the GPU's memory, which one run per GPU affords)."""
    if not gpus:
        return {"gpu_memory_limit_mb": None, "gpu_memory_growth": False}
    if limit_mb is None:
        try:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError) as exc:
            log.warning("GPU memory growth not set: the GPU was already initialised", error=str(exc))
            return {"gpu_memory_limit_mb": None, "gpu_memory_growth": False, "gpu_memory_reason": str(exc)}
        return {"gpu_memory_limit_mb": None, "gpu_memory_growth": True}
    for gpu in gpus:
        try:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)]
            )
            applied = tf.config.get_logical_device_configuration(gpu) or []
        except (RuntimeError, ValueError) as exc:
            raise GpuMemoryCapError(
                f"ABLATE_GPU_MEMORY_MB={limit_mb}: TensorFlow did not apply the cap to {gpu.name} ({exc}); "
                "the process would take the whole GPU beside the other runs on it"
            ) from None
        if [getattr(config, "memory_limit", None) for config in applied] != [limit_mb]:
            raise GpuMemoryCapError(
                f"ABLATE_GPU_MEMORY_MB={limit_mb}: TensorFlow reports {applied!r} for {gpu.name}, not the cap"
            )
    return {"gpu_memory_limit_mb": limit_mb, "gpu_memory_growth": False}


def _list_gpus(capture: bool) -> tuple[list, str]:
    """TensorFlow's GPUs and, when asked, what its C++ runtime wrote to stderr meanwhile: the
    first listing loads CUDA, and its errors (a failed cuInit, a library that did not load) go
    only there. The text is written back to stderr, so the logs keep it too; the start-up
    output a quiet start captured comes first."""
    # A quiet start (workers.quiet_start) listed them first and kept what CUDA said then.
    earlier = quiet_start.startup_output()
    if not capture:
        return tf.config.list_physical_devices("GPU"), earlier
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            gpus = tf.config.list_physical_devices("GPU")
        finally:
            _flush_c_stdio()  # TensorFlow's C++ log may sit in the C library's buffer
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    if text:
        os.write(2, text.encode())
    return gpus, earlier + text


def _flush_c_stdio() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


def why_no_gpu(load_error: str) -> str:
    """TensorFlow's load error where it logged one, else what can be found out here: a CPU-only
    TensorFlow build, or the driver library that cannot be opened, or what cuInit returned."""
    lines = [line.strip() for line in load_error.splitlines() if _LOAD_ERROR.search(line)]
    if lines:
        return "; ".join(line.split("] ", 1)[-1] for line in lines[-3:])
    build = tf.sysconfig.get_build_info()
    if not build.get("is_cuda_build"):
        return "this TensorFlow is a CPU-only build (install tensorflow[and-cuda])"
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return f"the NVIDIA driver library cannot be loaded ({exc})"
    code = libcuda.cuInit(0)
    return (
        f"cuInit returned CUDA error {code} "
        f"(TensorFlow {tf.__version__} is built for CUDA {build.get('cuda_version')})"
    )

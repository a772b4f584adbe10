"""How a training process uses its device: GPU memory, precision policy, XLA, clean-up.

Decided in the process that trains (a Celery pool process or an `ablate run` child), each run
recording what it asked for and what it got. No-ops without a GPU.

- Memory: before TensorFlow first touches a GPU, either memory growth (the default: one run per
  GPU) or a logical device capped at ABLATE_GPU_MEMORY_MB (several runs per GPU; `ablate worker`
  sets the cap), with the GPU check and thread pools: `workers.process_setup`. TensorFlow never
  hands memory back to the driver, so the cap is what keeps a long-lived process bounded;
  between runs the process frees its tensors back to its own pool.
- Precision: `training.mixed_precision` true means bfloat16 on GPUs of compute capability 8.0 or
  newer, float16 on older ones; on a CPU it is not applied (float16 kernels there are slow or
  missing) and the run says so.
- XLA: off when an augmentation layer cannot be compiled (their image transform,
  ImageProjectiveTransformV3, has no XLA kernel: tests/unit/test_devices.py tries each layer).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import keras
import structlog
import tensorflow as tf

from service.spec.models import TrainConfig
from workers import gpus

log = structlog.get_logger(__name__)

XLA_INCOMPATIBLE_AUGMENTATION = ("rotation", "zoom", "translation", "random_crop")
"""Augmentation fields whose Keras layers use ImageProjectiveTransformV3 (random_crop is a
pixel shift built on RandomTranslation): XLA cannot compile them, on the CPU or a GPU."""
BFLOAT16_CAPABILITY = (8, 0)



def configure_gpu_memory(gpu_memory_mb: int | None = None) -> dict[str, Any]:
    """The process's threads, GPU check and memory policy (`workers.process_setup`; a cap of
    `gpu_memory_mb`, else memory growth): once per process, before TensorFlow first touches a
    GPU. Raises a `DeviceError` rather than train on the CPU, or uncapped, by accident. Returns
    what was set, for metrics.json."""
    from workers.process_setup import configure_process

    return configure_process(gpu_memory_mb=gpu_memory_mb)


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


@dataclass(frozen=True)
class Precision:
    requested: str
    policy: str
    reason: str | None = None


def choose_precision(requested: bool | str, capabilities: list[tuple[int, int]]) -> Precision:
    """The dtype policy for `training.mixed_precision` on GPUs with these compute capabilities."""
    if requested is False:
        return Precision("float32", "float32")
    wanted = "mixed (auto)" if requested is True else f"mixed_{requested}"
    if not capabilities:
        return Precision(wanted, "float32", "no GPU: mixed precision is applied on GPUs only")
    oldest = min(capabilities)
    capability = f"{oldest[0]}.{oldest[1]}"
    if requested is True:
        policy = "mixed_bfloat16" if oldest >= BFLOAT16_CAPABILITY else "mixed_float16"
        return Precision(wanted, policy, f"true: {policy.removeprefix('mixed_')} on compute capability {capability}")
    if requested == "bfloat16" and oldest < BFLOAT16_CAPABILITY:
        return Precision(
            wanted, "float32", f"bfloat16 needs compute capability 8.0 or newer; this GPU has {capability}"
        )
    return Precision(wanted, f"mixed_{requested}")


@dataclass(frozen=True)
class Xla:
    requested: bool
    applied: bool
    reason: str | None = None


def choose_xla(config: TrainConfig) -> Xla:
    """XLA as `training.jit_compile` asks, unless an augmentation layer cannot be compiled."""
    requested = config.training.jit_compile
    blockers = [
        f"augmentation.{name}"
        for name in XLA_INCOMPATIBLE_AUGMENTATION
        if getattr(config.augmentation, name) not in (0, 0.0, False)
    ]
    if requested and blockers:
        reason = f"{', '.join(blockers)}: the image transform of these layers cannot be XLA-compiled"
        return Xla(True, False, reason)
    return Xla(requested, requested)


def xla_after_compile(xla: Xla, model: keras.Model) -> Xla:
    """Keras itself turns XLA off for layers that declare they cannot be compiled (a factory's
    lookup or recurrent layers, say): record that too."""
    if not xla.applied or model.jit_compile:
        return xla
    layers = getattr(model, "_flatten_layers", lambda: model.layers)()
    names = [layer.name for layer in layers if not getattr(layer, "supports_jit", True)]
    detail = f"layers {', '.join(names)} do not support XLA" if names else "op determinism is on"
    return Xla(xla.requested, False, f"Keras turned XLA off: {detail}")


def reset_peak_memory() -> None:
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_mb() -> float | None:
    """Peak GPU memory this process allocated since `reset_peak_memory` (MiB), None on a CPU.
    TensorFlow's allocator only: the CUDA context and library workspaces are outside it."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    try:
        return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    except (RuntimeError, ValueError):  # the device is gone or not initialised: still record the run
        return None


def memory_readings() -> dict[str, float | None]:
    """The run's device memory, for metrics.json and a failed run's status.json: the allocator's
    peak, and the process's memory as the driver reports it (context included)."""
    if not tf.config.list_physical_devices("GPU"):
        return {"gpu_memory_peak_mb": None, "gpu_memory_driver_mb": None}
    return {"gpu_memory_peak_mb": peak_memory_mb(), "gpu_memory_driver_mb": gpus.process_memory_mb(os.getpid())}


def forget_frames(exc: BaseException) -> None:
    """Clear the local variables of the finished frames a failed run's exception still reaches:
    its traceback's and their callers' (Keras' traceback filtering hides `fit` and its caller
    from the traceback, not from the frames), so that the model can be collected while the
    exception is still being handled."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        while frame is not None:
            try:
                frame.clear()
            except RuntimeError:  # still executing: the runner and its callers
                break
            frame = frame.f_back
        tb = tb.tb_next


_frozen = False


def freeze_imports() -> None:
    """Once per process, before its first run: move what is alive now (TensorFlow's and Keras'
    modules, hundreds of thousands of objects) out of the garbage collector's sight, so each
    run's collection scans only the run's own objects (about 0.01 s instead of 0.2 s)."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def release_run_memory() -> None:
    """After a run, successful or not: drop Keras' global state (the dtype policy included)
    and collect the run's model and tensors, so the next run reuses the process's memory.
    The one collection per run: the next run starts with `clear_session(free_memory=False)`."""
    keras.backend.clear_session(free_memory=False)
    gc.collect()

"""The environment a run trained in, recorded in metrics.json so results can be compared:
versions, device, and the precision policy, XLA and GPU memory the run asked for and got."""

from __future__ import annotations

import platform
import socket
from typing import Any

import keras
import tensorflow as tf

from workers.devices import Precision, Xla


def describe_environment(
    mixed_precision: bool | str,
    precision: Precision,
    xla: Xla,
    memory: dict[str, Any] | None = None,
    peak_memory_mb: float | None = None,
) -> dict[str, Any]:
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "host": socket.gethostname(),
        "device": ", ".join(names) if names else f"CPU ({platform.machine()})",
        "gpus": len(gpus),
        "mixed_precision": mixed_precision,  # as the spec asked
        "precision_requested": precision.requested,
        "precision_policy": precision.policy,  # as applied
        "precision_reason": precision.reason,
        "xla_requested": xla.requested,
        "xla": xla.applied,
        "xla_reason": xla.reason,
        **(memory or {}),
        "gpu_memory_peak_mb": peak_memory_mb,
    }

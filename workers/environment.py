"""The environment a run trained in, recorded in metrics.json so results can be compared."""

from __future__ import annotations

import platform
import socket
from typing import Any

import keras
import tensorflow as tf


def describe_environment(mixed_precision: bool, jit_compile: bool) -> dict[str, Any]:
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
        "precision_policy": keras.mixed_precision.global_policy().name,
        "mixed_precision": mixed_precision,
        "xla": jit_compile,
    }

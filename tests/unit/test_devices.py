"""workers.devices: the precision policy and XLA decisions, the GPU memory set-up (a no-op on a
CPU), and which augmentation layers XLA really cannot compile (tried, not assumed)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from service.spec.models import TrainConfig
from service.spec.network import AugmentationSpec
from workers import devices
from workers.devices import (
    XLA_INCOMPATIBLE_AUGMENTATION,
    Precision,
    Xla,
    choose_precision,
    choose_xla,
    xla_after_compile,
)
from workers.model import build_augmentation

AMPERE, TURING = (8, 0), (7, 5)


@pytest.mark.parametrize(
    ("requested", "capabilities", "expected"),
    [
        (False, [AMPERE], Precision("float32", "float32")),
        (True, [], Precision("mixed (auto)", "float32", "no GPU: mixed precision is applied on GPUs only")),
        ("float16", [], Precision("mixed_float16", "float32", "no GPU: mixed precision is applied on GPUs only")),
        (True, [(9, 0)], Precision("mixed (auto)", "mixed_bfloat16", "true: bfloat16 on compute capability 9.0")),
        (True, [TURING], Precision("mixed (auto)", "mixed_float16", "true: float16 on compute capability 7.5")),
        (True, [AMPERE, TURING], Precision("mixed (auto)", "mixed_float16", "true: float16 on compute capability 7.5")),
        ("float16", [AMPERE], Precision("mixed_float16", "mixed_float16")),
        ("bfloat16", [AMPERE], Precision("mixed_bfloat16", "mixed_bfloat16")),
        (
            "bfloat16",
            [TURING],
            Precision("mixed_bfloat16", "float32", "bfloat16 needs compute capability 8.0 or newer; this GPU has 7.5"),
        ),
    ],
)
def test_precision_policy_follows_the_request_and_the_gpu(requested, capabilities, expected):
    assert choose_precision(requested, capabilities) == expected


def config(jit_compile: bool, **augmentation) -> TrainConfig:
    return TrainConfig.model_validate({"training": {"jit_compile": jit_compile}, "augmentation": augmentation})


def test_xla_is_off_only_for_augmentation_it_cannot_compile():
    assert choose_xla(config(True)) == Xla(True, True)
    assert choose_xla(config(True, horizontal_flip=True, vertical_flip=True, contrast=0.2)) == Xla(True, True)
    assert choose_xla(config(False, rotation=0.1)) == Xla(False, False)
    off = choose_xla(config(True, rotation=0.1, zoom=0.1, contrast=0.2))
    assert (off.requested, off.applied) == (True, False)
    assert off.reason == (
        "augmentation.rotation, augmentation.zoom: the image transform of these layers cannot be XLA-compiled"
    )
    for field in XLA_INCOMPATIBLE_AUGMENTATION:
        value = 2 if field == "random_crop" else 0.1
        assert choose_xla(config(True, **{field: value})).applied is False, field


def test_keras_refusing_xla_is_recorded_with_the_layer():
    class HostOnly(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_jit = False

        def call(self, x):
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(HostOnly(name="host_only")(inputs)))
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="adam", loss="mse", jit_compile=True)
    xla = xla_after_compile(Xla(True, True), model)
    assert (xla.applied, xla.reason) == (False, "Keras turned XLA off: layers host_only do not support XLA")
    assert xla_after_compile(Xla(True, False, "kept"), model) == Xla(True, False, "kept")


def test_gpu_memory_set_up_is_a_no_op_on_a_cpu_and_done_once():
    first = devices.configure_gpu_memory()
    assert (first["gpu_memory_limit_mb"], first["gpu_memory_growth"]) == (None, False)
    assert {"cpu_cores_available", "training_processes", "intra_op_threads", "inter_op_threads"} <= set(first)
    assert devices.configure_gpu_memory() is first
    assert devices.peak_memory_mb() is None
    assert devices.memory_readings() == {"gpu_memory_peak_mb": None, "gpu_memory_driver_mb": None}


def test_memory_readings_are_the_allocator_peak_and_the_driver_figure(monkeypatch):
    import os

    import tensorflow as tf

    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu])
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", lambda name: {"current": 0, "peak": 3 * 2**29})
    monkeypatch.setattr(devices.gpus, "process_memory_mb", lambda pid: 2310.0 if pid == os.getpid() else None)
    assert devices.memory_readings() == {"gpu_memory_peak_mb": 1536.0, "gpu_memory_driver_mb": 2310.0}

    def gone(name):
        raise RuntimeError("device GPU:0 not initialised")

    monkeypatch.setattr(tf.config.experimental, "get_memory_info", gone)
    assert devices.memory_readings()["gpu_memory_peak_mb"] is None  # a failed run is still recorded


def test_augmentation_stays_float32_under_mixed_bfloat16():
    # No bfloat16 GPU kernel for ImageProjectiveTransformV3: the layers keep float32, the first
    # layer after them computes in bfloat16.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        spec = AugmentationSpec.model_validate(AUGMENTATION_VALUES)
        layers = build_augmentation(spec, (8, 8, 1))
        assert len(layers) == 6
        x = inputs = keras.Input((8, 8, 1))
        for layer in layers:
            x = layer(x)
        assert {layer.compute_dtype for layer in layers} == {"float32"}
        assert x.dtype == "float32"
        conv = keras.layers.Conv2D(2, 3)
        conv(x)
        assert conv.compute_dtype == "bfloat16"
        model = keras.Model(inputs, x)
        out = model(np.ones((2, 8, 8, 1), "float32"), training=True)
        assert str(out.dtype) == "<dtype: 'float32'>" or "float32" in str(out.dtype)
    finally:
        devices.release_run_memory()


def test_release_resets_the_dtype_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    devices.release_run_memory()
    assert keras.mixed_precision.global_policy().name == "float32"


AUGMENTATION_VALUES = {
    "horizontal_flip": True,
    "vertical_flip": True,
    "rotation": 0.1,
    "zoom": 0.1,
    "translation": 0.1,
    "contrast": 0.2,
    "random_crop": 2,
}


def test_every_augmentation_field_has_a_trial_value():
    assert set(AUGMENTATION_VALUES) == set(AugmentationSpec.model_fields)


@pytest.mark.slow
@pytest.mark.parametrize("field", sorted(AUGMENTATION_VALUES))
def test_xla_compiles_exactly_the_augmentation_layers_not_listed_as_incompatible(field):
    # Keras' own flag (supports_jit) is overridden so that XLA really tries: the list must
    # match what XLA does with each layer, here on the CPU.
    keras.backend.clear_session()
    spec = AugmentationSpec.model_validate({field: AUGMENTATION_VALUES[field]})
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for layer in build_augmentation(spec, (8, 8, 1)):
        layer.supports_jit = True
        x = layer(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
    assert model.jit_compile
    x_train = np.random.default_rng(0).random((32, 8, 8, 1), dtype="float32")
    y_train = np.arange(32) % 3

    def fit() -> None:
        model.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0)

    if field in XLA_INCOMPATIBLE_AUGMENTATION:
        with pytest.raises(Exception, match="ImageProjectiveTransformV3"):
            fit()
    else:
        fit()

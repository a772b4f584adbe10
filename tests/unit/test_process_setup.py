"""workers.process_setup: a process pinned to a GPU that TensorFlow does not list, or whose
memory cap TensorFlow refuses, raises instead of training on the CPU or uncapped. TensorFlow's
GPU-facing calls (list_physical_devices, set_logical_device_configuration, ...) are replaced
at their boundary; this machine has no GPU."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from workers import process_setup
from workers.gpus import DeviceError
from workers.process_setup import (
    GpuMemoryCapError,
    GpuUnavailable,
    configure_memory,
    configure_process,
)

GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
CUINIT = (
    "E0000 00:00:1796166303.055077   16603 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    monkeypatch.setattr(process_setup, "_done", None)
    for name in ("ABLATE_GPU_MEMORY_MB", "ABLATE_RUNS_PER_GPU"):
        monkeypatch.delenv(name, raising=False)


def listing(gpus: list, stderr: str = ""):
    def list_physical_devices(device_type=None):
        if stderr:
            os.write(2, stderr.encode())  # as TensorFlow's C++ runtime logs: to fd 2
        return list(gpus) if device_type == "GPU" else [tf.config.PhysicalDevice("/physical_device:CPU:0", "CPU")]

    return list_physical_devices


def test_a_process_pinned_to_a_gpu_tensorflow_does_not_list_refuses_with_its_load_error(monkeypatch, capfd):
    monkeypatch.setattr(tf.config, "list_physical_devices", listing([], CUINIT))
    with pytest.raises(GpuUnavailable) as caught:
        configure_process({"CUDA_VISIBLE_DEVICES": "0"})
    message = str(caught.value)
    assert message.startswith(f"CUDA_VISIBLE_DEVICES=0, but TensorFlow {tf.__version__} lists no GPU: ")
    assert "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)" in message
    assert "Refusing to train on the CPU" in message and "--gpus none" in message
    assert caught.value.exit_code == 3 and isinstance(caught.value, DeviceError)
    assert "failed call to cuInit" in capfd.readouterr().err  # still in the logs
    assert process_setup._done is None  # the next run checks again


def test_without_a_logged_error_the_driver_library_is_named(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", listing([]))
    monkeypatch.setenv("ABLATE_RUNS_PER_GPU", "2")
    with pytest.raises(
        GpuUnavailable,
        match="ABLATE_RUNS_PER_GPU=2, but TensorFlow .* lists no GPU: "
        "(the NVIDIA driver library cannot be loaded \\(libcuda.so.1|cuInit returned)",
    ):
        configure_process({"ABLATE_RUNS_PER_GPU": "2"})
    monkeypatch.setattr(tf.sysconfig, "get_build_info", lambda: {"is_cuda_build": False})
    assert process_setup.why_no_gpu("") == "this TensorFlow is a CPU-only build (install tensorflow[and-cuda])"


def test_a_cpu_process_records_its_threads_and_trains(monkeypatch):
    setup = configure_process({"CUDA_VISIBLE_DEVICES": "-1", "ABLATE_TRAINING_PROCESSES": "2"})
    assert setup["training_processes"] == 2 and setup["cpu_cores_available"] >= 1
    assert setup["gpu_memory_limit_mb"] is None and setup["gpu_memory_growth"] is False
    assert configure_process({}) is setup  # once per process


def test_a_cap_tensorflow_refuses_is_an_error(monkeypatch):
    def refuse(device, configs):
        raise RuntimeError("Virtual devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_logical_device_configuration", refuse)
    with pytest.raises(
        GpuMemoryCapError, match="ABLATE_GPU_MEMORY_MB=4000: TensorFlow did not apply the cap .*after being initialized"
    ):
        configure_memory([GPU], 4000)


def test_a_cap_tensorflow_does_not_report_back_is_an_error(monkeypatch):
    applied = {}
    monkeypatch.setattr(
        tf.config, "set_logical_device_configuration", lambda device, configs: applied.update(configs=configs)
    )
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda device: [])
    with pytest.raises(GpuMemoryCapError, match="reports \\[\\] for /physical_device:GPU:0, not the cap"):
        configure_memory([GPU], 4000)
    assert applied["configs"][0].memory_limit == 4000


def test_an_applied_cap_and_memory_growth_are_recorded(monkeypatch):
    configs = {}
    monkeypatch.setattr(
        tf.config, "set_logical_device_configuration", lambda device, c: configs.update({device.name: c})
    )
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda device: configs[device.name])
    assert configure_memory([GPU], 4000) == {"gpu_memory_limit_mb": 4000, "gpu_memory_growth": False}
    grown = []
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda device, on: grown.append((device.name, on)))
    assert configure_memory([GPU], None) == {"gpu_memory_limit_mb": None, "gpu_memory_growth": True}
    assert grown == [(GPU.name, True)]


def test_a_pinned_process_that_sees_its_gpu_applies_the_cap(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", listing([GPU]))
    configs = {}
    monkeypatch.setattr(
        tf.config, "set_logical_device_configuration", lambda device, c: configs.update({device.name: c})
    )
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda device: configs[device.name])
    # The cap comes from the caller (the runner's RunOptions, read from ABLATE_GPU_MEMORY_MB).
    setup = configure_process({"CUDA_VISIBLE_DEVICES": "0", "ABLATE_GPU_MEMORY_MB": "3000"}, gpu_memory_mb=3000)
    assert setup["gpu_memory_limit_mb"] == 3000

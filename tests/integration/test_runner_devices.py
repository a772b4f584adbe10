"""`workers.runner.run` and its device decisions, with real (tiny) training on the CPU: XLA
turned off for augmentation it cannot compile, mixed precision on a pretend GPU (the policy
is chosen from the GPU's compute capability, which the test supplies), and memory released
after a run, failed or not."""

from __future__ import annotations

import gc
import weakref

import keras
import pytest

from service import datasets
from service.lifecycle.documents import RunMetrics
from service.lifecycle.storage import read_status, run_key
from service.store import LocalStore
from tests.integration.test_runner import only_run
from workers import checkpoint, devices, runner
from workers.runner import run


def metrics_of(store: LocalStore, run_id: str) -> RunMetrics:
    return RunMetrics.model_validate(store.get_json(run_key(run_id, "metrics.json")))


def test_xla_with_an_augmentation_it_cannot_compile_trains_without_it_and_says_why(
    tiny_spec, tmp_path
):
    tiny_spec["training"].update({"epochs": 2, "jit_compile": True})
    tiny_spec["augmentation"] = {"rotation": 0.05, "horizontal_flip": True}
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    environment = metrics_of(store, spec.run_id).environment
    assert environment["xla_requested"] is True and environment["xla"] is False
    assert (
        environment["xla_reason"]
        == "augmentation.rotation: the image transform of these layers cannot be XLA-compiled"
    )
    assert environment["gpus"] == 0 and environment["gpu_memory_peak_mb"] is None


@pytest.fixture
def built_models(monkeypatch) -> list:
    """Every model the runner builds (weak references), to look at it after the run."""
    models: list = []
    real_build = runner.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(runner, "build_model", build)
    return models


@pytest.mark.parametrize(
    ("requested", "capability", "policy", "compute_dtype"),
    [(True, (8, 0), "mixed_bfloat16", "bfloat16"), ("float16", (7, 5), "mixed_float16", "float16")],
)
def test_mixed_precision_on_a_gpu_keeps_a_float32_output_and_resumes(
    requested, capability, policy, compute_dtype, tiny_spec, tmp_path, monkeypatch, built_models
):
    monkeypatch.setattr(devices, "gpu_compute_capabilities", lambda: [capability])
    tiny_spec["training"].update({"epochs": 2, "mixed_precision": requested})
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    seen = {}
    real_save = checkpoint.save

    def crash_after_one(store_, run_id, variables, state):
        model = built_models[-1]()
        seen.update(
            conv=model.get_layer("block1_conv1").compute_dtype, output=str(model.output.dtype)
        )
        real_save(store_, run_id, variables, state)
        raise RuntimeError("worker lost")

    monkeypatch.setattr(checkpoint, "save", crash_after_one)
    with pytest.raises(RuntimeError, match="worker lost"):
        run(spec, store)
    assert seen == {"conv": compute_dtype, "output": "float32"}
    assert keras.mixed_precision.global_policy().name == "float32"  # released with the run

    # The checkpoint (with the loss scale of float16's optimizer) restores into the same policy.
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert run(spec, store).state == "succeeded"
    metrics = metrics_of(store, spec.run_id)
    assert metrics.resumed_from_epoch == 1 and [h.epoch for h in metrics.history] == [1, 2]
    assert metrics.environment["precision_policy"] == policy
    assert metrics.environment["mixed_precision"] == requested


def test_a_failed_run_leaves_no_model_in_memory(tiny_spec, tmp_path, monkeypatch, built_models):
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)

    def fail(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint, "save", fail)
    with pytest.raises(RuntimeError, match="disk full") as caught:
        run(spec, store)
    gc.collect()
    # The exception is still held (as a task holds it while it records the failure), and yet
    # the model of the run is gone: the worker's next run gets the memory.
    assert caught.value.__traceback__ is not None
    assert [ref() for ref in built_models] == [None]


def test_a_checkpoint_of_another_precision_policy_restarts_the_run_and_says_why(
    tiny_spec, tmp_path, monkeypatch
):
    # Trained one epoch as bfloat16 (an Ampere worker), resumed on a Turing worker (float16).
    monkeypatch.setattr(devices, "gpu_compute_capabilities", lambda: [(8, 0)])
    tiny_spec["training"].update({"epochs": 2, "mixed_precision": True})
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    real_save = checkpoint.save

    def crash_after_one(store_, run_id, variables, state):
        real_save(store_, run_id, variables, state)
        raise RuntimeError("worker lost")

    monkeypatch.setattr(checkpoint, "save", crash_after_one)
    with pytest.raises(RuntimeError, match="worker lost"):
        run(spec, store)
    monkeypatch.setattr(checkpoint, "save", real_save)
    monkeypatch.setattr(devices, "gpu_compute_capabilities", lambda: [(7, 5)])
    assert run(spec, store).state == "succeeded"
    metrics = metrics_of(store, spec.run_id)
    reason = (
        "the checkpoint of epoch 1 was trained under mixed_bfloat16, this worker trains under "
        "mixed_float16: restarted from scratch"
    )
    assert metrics.environment["restart_reason"] == reason
    assert metrics.environment["precision_policy"] == "mixed_float16"
    assert metrics.resumed_from_epoch is None and [h.epoch for h in metrics.history] == [1, 2]
    status = read_status(store, spec.run_id)
    assert status.restart_reason == reason and status.attempt == 2


def test_a_failed_run_records_its_device_memory(tiny_spec, tmp_path, monkeypatch):
    readings = {"gpu_memory_peak_mb": 812.5, "gpu_memory_driver_mb": 1300.0}
    monkeypatch.setattr(devices, "memory_readings", lambda: dict(readings))

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError("OOM when allocating tensor")

    monkeypatch.setattr(checkpoint, "save", out_of_memory)
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    with pytest.raises(RuntimeError, match="OOM"):
        run(spec, store)
    status = read_status(store, spec.run_id)
    assert status.state == "failed"
    assert (status.gpu_memory_peak_mb, status.gpu_memory_driver_mb) == (812.5, 1300.0)


def test_xla_drops_the_short_last_batch_and_times_compilation_apart(tiny_spec, tmp_path):
    tiny_spec["training"].update({"epochs": 3, "jit_compile": True})
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    metrics = metrics_of(store, spec.run_id)
    samples = len(datasets.load(spec.config.dataset).x_train)
    assert samples % 64 and metrics.environment["xla"] is True
    assert metrics.environment["xla_dropped_samples_per_epoch"] == samples % 64
    timings = metrics.timings
    seconds = [h.epoch_seconds for h in metrics.history]
    assert timings["first_epoch_seconds"] == seconds[0]
    assert timings["steady_epoch_seconds"] == pytest.approx(
        sorted(seconds[1:])[0] / 2 + sorted(seconds[1:])[1] / 2, abs=1e-3
    )
    assert timings["compile_seconds"] == pytest.approx(
        max(0.0, seconds[0] - timings["steady_epoch_seconds"]), abs=1e-3
    )
    environment = metrics.environment
    assert environment["cpu_cores_available"] >= 1 and environment["training_processes"] >= 1
    assert "intra_op_threads" in environment and "inter_op_threads" in environment


def test_a_process_pinned_to_a_gpu_it_cannot_see_writes_nothing(tiny_spec, tmp_path, monkeypatch):
    # This machine has no GPU: TensorFlow really lists none for CUDA_VISIBLE_DEVICES=0.
    from workers import process_setup

    monkeypatch.setattr(process_setup, "_done", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    with pytest.raises(
        process_setup.GpuUnavailable, match="CUDA_VISIBLE_DEVICES=0, but TensorFlow .* lists no GPU"
    ):
        run(spec, store)
    assert store.list(run_key(spec.run_id, "")) == []  # the run stays queued, untouched

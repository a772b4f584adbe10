"""`workers.runner.run` and its device decisions, with real (tiny) training on the CPU: XLA
turned off for augmentation it cannot compile, mixed precision on a pretend GPU (the policy
is chosen from the GPU's compute capability, which the test supplies), and memory released
after a run, failed or not."""

from __future__ import annotations

import gc
import weakref

import keras
import pytest

from service.records import RunMetrics, run_key
from service.store import LocalStore
from tests.integration.test_runner import only_run
from workers import checkpoint, devices, runner
from workers.runner import run


def metrics_of(store: LocalStore, run_id: str) -> RunMetrics:
    return RunMetrics.model_validate(store.get_json(run_key(run_id, "metrics.json")))


def test_xla_with_an_augmentation_it_cannot_compile_trains_without_it_and_says_why(tiny_spec, tmp_path):
    tiny_spec["training"].update({"epochs": 2, "jit_compile": True})
    tiny_spec["augmentation"] = {"rotation": 0.05, "horizontal_flip": True}
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    environment = metrics_of(store, spec.run_id).environment
    assert environment["xla_requested"] is True and environment["xla"] is False
    assert environment["xla_reason"] == "augmentation.rotation: the image transform of these layers cannot be XLA-compiled"
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
        seen.update(conv=model.get_layer("block1_conv1").compute_dtype, output=str(model.output.dtype))
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

"""`workers.runner.run` in process: artifacts, reuse, divergence, resume after a crash."""

from __future__ import annotations

import pytest

from service.lifecycle.documents import RunMetrics
from service.lifecycle.storage import read_status, run_key
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from workers import checkpoint
from workers.runner import RunHooks, TimeLimitReached, run


def only_run(data: dict):
    plan = build_plan(spec_from_data(data))
    assert plan.run_count == 1
    return next(iter(plan.runs.values()))


def test_run_writes_every_artifact(tiny_spec, tmp_path):
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    result = run(spec, store)
    assert result.state == "succeeded" and not result.reused
    for name in (
        "run.json",
        "status.json",
        "model.keras",
        "metrics.json",
        "checkpoints/latest.json",
    ):
        assert store.exists(run_key(spec.run_id, name)), name
    metrics = RunMetrics.model_validate(store.get_json(run_key(spec.run_id, "metrics.json")))
    assert [h.epoch for h in metrics.history] == [1, 2, 3]
    assert all(
        h.val_accuracy is not None and h.learning_rate == pytest.approx(0.005)
        for h in metrics.history
    )
    assert metrics.test.samples == sum(map(sum, metrics.test.confusion_matrix))
    assert len(metrics.test.per_class_accuracy) == 10
    assert metrics.test.accuracy > 0.5  # digits is easy: even 3 tiny epochs beat chance (0.1)
    assert metrics.environment["keras"].startswith("3.")
    assert metrics.environment["precision_policy"] == "float32"
    assert store.get_json(run_key(spec.run_id, "run.json"))["run_id"] == spec.run_id
    assert read_status(store, spec.run_id).state == "succeeded"
    # only the two newest checkpoints are kept
    assert len(store.list(run_key(spec.run_id, "checkpoints/"))) == 3


def test_second_run_is_reused_not_retrained(tiny_spec, tmp_path):
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    first = run(spec, store)
    before = store.get_bytes(run_key(spec.run_id, "metrics.json"))
    second = run(spec, store)
    assert second.reused and second.test_accuracy == first.test_accuracy
    assert store.get_bytes(run_key(spec.run_id, "metrics.json")) == before


def test_nan_loss_ends_as_diverged_with_its_epoch(tiny_spec, tmp_path):
    tiny_spec["optimizer"] = {"name": "sgd", "learning_rate": 10.0, "momentum": 0.9}
    tiny_spec["dataset"]["scale"] = "none"  # raw 0..16 pixels make the blow-up certain
    tiny_spec["model"] = {
        "conv_blocks": [{"filters": 8, "activation": "leaky_relu", "pooling": "none"}],
        "dense": [16],
        "dense_activation": "leaky_relu",
    }
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    result = run(spec, store)
    assert result.state == "diverged"
    status = read_status(store, spec.run_id)
    assert status.state == "diverged" and status.diverged_epoch == 1
    assert "NaN or infinite" in status.error
    assert not store.exists(run_key(spec.run_id, "metrics.json"))
    assert run(spec, store).reused  # a diverged run is final: not retrained


def test_crash_after_an_epoch_resumes_with_continuous_history(tiny_spec, tmp_path, monkeypatch):
    tiny_spec["training"]["epochs"] = 4
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    real_save = checkpoint.save

    def crash_after_two(store_, run_id, variables, state):
        real_save(store_, run_id, variables, state)
        if state.epoch == 2:
            raise RuntimeError("worker lost")

    monkeypatch.setattr(checkpoint, "save", crash_after_two)
    with pytest.raises(RuntimeError, match="worker lost"):
        run(spec, store)
    status = read_status(store, spec.run_id)
    # The checkpoint writer's failure reaches training at the next epoch end (or two).
    assert status.state == "failed" and status.epoch >= 2 and "worker lost" in status.error

    monkeypatch.setattr(checkpoint, "save", real_save)
    result = run(spec, store)
    assert result.state == "succeeded"
    metrics = RunMetrics.model_validate(store.get_json(run_key(spec.run_id, "metrics.json")))
    assert [h.epoch for h in metrics.history] == [1, 2, 3, 4]
    assert metrics.resumed_from_epoch == 2 and metrics.attempt == 2


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny_spec, tmp_path, monkeypatch):
    tiny_spec["training"]["epochs"] = 4
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    real_save = checkpoint.save

    def crash_after_three(store_, run_id, variables, state):
        real_save(store_, run_id, variables, state)
        if state.epoch == 3:
            raise RuntimeError("worker lost")

    monkeypatch.setattr(checkpoint, "save", crash_after_three)
    with pytest.raises(RuntimeError):
        run(spec, store)
    store.put_bytes(run_key(spec.run_id, "checkpoints/epoch-0003.npz"), b"truncated")
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert run(spec, store).state == "succeeded"
    metrics = RunMetrics.model_validate(store.get_json(run_key(spec.run_id, "metrics.json")))
    assert metrics.resumed_from_epoch == 2
    assert [h.epoch for h in metrics.history] == [1, 2, 3, 4]


def test_training_options_label_smoothing_plateau_early_stopping(tiny_spec, tmp_path):
    tiny_spec["training"] = {
        "epochs": 12,
        "batch_size": 64,
        "label_smoothing": 0.1,
        "steps_per_execution": 2,
        "early_stopping": {"monitor": "val_accuracy", "patience": 0, "min_delta": 0.5},
    }
    tiny_spec["schedule"] = {
        "name": "reduce_on_plateau",
        "monitor": "val_loss",
        "patience": 0,
        "factor": 0.5,
        "min_lr": 0.0,
    }
    tiny_spec["optimizer"]["learning_rate"] = 0.05  # large enough that val_loss stalls
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    metrics = RunMetrics.model_validate(store.get_json(run_key(spec.run_id, "metrics.json")))
    # min_delta 0.5 can never be met after the first epoch: patience 0 stops at epoch 2
    assert metrics.stopped_early and metrics.epochs_run == 2
    assert len(metrics.history) == 2


def test_reduce_on_plateau_lowers_the_learning_rate(tiny_spec, tmp_path):
    tiny_spec["training"]["epochs"] = 6
    tiny_spec["schedule"] = {
        "name": "reduce_on_plateau",
        "monitor": "loss",
        "patience": 0,
        "factor": 0.5,
        "min_lr": 0.0,
    }
    tiny_spec["optimizer"] = {"name": "sgd", "learning_rate": 2.0}  # too high: the loss stalls
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    run(spec, store)
    status = read_status(store, spec.run_id)
    rates = [h.learning_rate for h in status.history]
    losses = [h.loss for h in status.history]
    for epoch in range(1, len(rates)):
        plateaued = losses[epoch - 1] >= min(losses[: epoch - 1], default=float("inf"))
        expected = rates[epoch - 1] * (0.5 if plateaued else 1.0)
        assert rates[epoch] == pytest.approx(expected, rel=1e-5), (rates, losses)
    assert rates[-1] < rates[0]


def test_mixed_precision_and_xla_are_recorded(tiny_spec, tmp_path):
    # On a CPU: XLA is used, mixed precision is not (and the run says why).
    tiny_spec["training"].update({"epochs": 1, "mixed_precision": True, "jit_compile": True})
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    environment = store.get_json(run_key(spec.run_id, "metrics.json"))["environment"]
    assert environment["precision_policy"] == "float32"
    assert environment["precision_reason"] == "no GPU: mixed precision is applied on GPUs only"
    assert environment["mixed_precision"] is True and environment["xla"] is True


def test_a_run_past_its_time_limit_stops_at_the_epoch_end_after_a_checkpoint(tiny_spec, tmp_path):
    tiny_spec["training"]["epochs"] = 6
    store = LocalStore(tmp_path)
    spec = only_run(tiny_spec)
    with pytest.raises(TimeLimitReached, match="stopped after epoch 2"):
        run(spec, store, RunHooks(time_up=iter([False, True]).__next__))
    status = read_status(store, spec.run_id)
    assert status.state == "failed" and status.epoch == 2 and "TimeLimitReached" in status.error
    assert store.get_json(run_key(spec.run_id, "checkpoints/latest.json")) == {"epoch": 2}
    assert not store.exists(run_key(spec.run_id, "metrics.json"))

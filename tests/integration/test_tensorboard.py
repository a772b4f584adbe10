"""TensorBoard event files of a run, read back with TensorBoard's own reader: the scalars per
epoch, the HParams session with the run's config values, in a local and an S3 store."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from service.lifecycle.documents import EpochRecord, RunMetrics
from service.lifecycle.documents import TestMetrics as StoredTestMetrics
from service.lifecycle.storage import run_key
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore, open_store
from workers.runner import run
from workers.tensorboard import hparam_values, write_events


def only_run(data: dict):
    plan = build_plan(spec_from_data(data))
    return next(iter(plan.runs.values()))


def read(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    # tf.summary (TF2) writes scalars as rank-0 tensors: the reader keeps them under Tensors.
    return {event.step: float(tensor_util.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)}


def session_hparams(accumulator: EventAccumulator) -> dict:
    content = accumulator.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    values = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return {"group_name": start.group_name, "values": values}


def test_a_run_writes_its_epochs_and_hparams_session(tiny_spec, tmp_path):
    tiny_spec["training"]["epochs"] = 2
    store = LocalStore(tmp_path / "store")
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "succeeded"
    metrics = RunMetrics.model_validate(store.get_json(run_key(spec.run_id, "metrics.json")))
    root = tmp_path / "store" / "runs" / spec.run_id / "tensorboard"

    train = read(root / "train")
    assert scalars(train, "epoch_loss") == pytest.approx({h.epoch: h.loss for h in metrics.history})
    assert scalars(train, "epoch_accuracy") == pytest.approx({h.epoch: h.accuracy for h in metrics.history})
    assert scalars(train, "epoch_learning_rate") == pytest.approx({1: 0.005, 2: 0.005})
    validation = read(root / "validation")
    assert scalars(validation, "epoch_loss") == pytest.approx({h.epoch: h.val_loss for h in metrics.history})
    assert scalars(validation, "epoch_accuracy") == pytest.approx({h.epoch: h.val_accuracy for h in metrics.history})

    session = read(root)
    assert scalars(session, "test_accuracy") == pytest.approx({2: metrics.test.accuracy})
    hparams = session_hparams(session)
    assert hparams["group_name"] == spec.run_id
    values = hparams["values"]
    assert values["optimizer.learning_rate"] == pytest.approx(0.005)
    assert values["optimizer.name"] == "adam"
    assert values["model.conv_blocks.0.filters"] == 8
    assert values["training.epochs"] == 2 and values["seed"] == spec.seed
    assert "training.early_stopping" not in values  # null: left blank
    assert metrics.timings["tensorboard_seconds"] < 2.0

    # `tensorboard --logdir STORE` finds the run's three folders and its HParams session there.
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "store"))
    multiplexer.Reload()
    base = f"runs/{spec.run_id}/tensorboard"
    assert sorted(multiplexer.Runs()) == [base, f"{base}/train", f"{base}/validation"]
    sessions = multiplexer.PluginRunToTagToContent(hparams_metadata.PLUGIN_NAME)
    assert list(sessions) == [base]


def history(epochs: int) -> list[EpochRecord]:
    return [
        EpochRecord(epoch=e, loss=1.0 / e, accuracy=0.5, val_loss=1.5 / e, val_accuracy=0.4,
                    learning_rate=0.01, epoch_seconds=0.1)
        for e in range(1, epochs + 1)
    ]


def test_s3_store_gets_the_files_and_a_rewrite_leaves_one_file_per_folder(tiny_spec, s3_env, tmp_path):
    store = open_store(s3_env)
    spec = only_run(tiny_spec)
    test = StoredTestMetrics(accuracy=0.9, loss=0.3, per_class_accuracy=[], confusion_matrix=[], samples=0)
    first = write_events(store, spec, history(2), None)
    # A later attempt (resumed) writes the whole history again: the old files go.
    second = write_events(store, spec, history(3), test)
    keys = store.list(run_key(spec.run_id, "tensorboard/"))
    assert len(first) == 3 and keys == sorted(second)
    assert sorted(key.split("/")[-2] for key in keys) == ["tensorboard", "train", "validation"]

    local = tmp_path / "pulled"
    for key in keys:
        target = local / key
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, target)
    train = read(local / "runs" / spec.run_id / "tensorboard" / "train")
    assert sorted(scalars(train, "epoch_loss")) == [1, 2, 3]
    assert scalars(read(local / "runs" / spec.run_id / "tensorboard"), "test_accuracy") == pytest.approx({3: 0.9})


def test_hparam_values_flatten_the_config_to_dotted_scalars(tiny_spec):
    tiny_spec["model"]["dense"] = [32, 16]
    values = hparam_values(only_run(tiny_spec))
    assert values["model.dense.0"] == 32 and values["model.dense.1"] == 16
    assert values["model.dense.count"] == 2
    assert values["dataset.kind"] == "digits"
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())


def test_a_diverged_run_has_its_session_and_no_test_metrics(tiny_spec, tmp_path):
    tiny_spec["optimizer"] = {"name": "sgd", "learning_rate": 10.0, "momentum": 0.9}
    tiny_spec["dataset"]["scale"] = "none"  # raw 0..16 pixels make the blow-up certain
    tiny_spec["model"] = {
        "conv_blocks": [{"filters": 8, "activation": "leaky_relu", "pooling": "none"}],
        "dense": [16],
        "dense_activation": "leaky_relu",
    }
    store = LocalStore(tmp_path / "store")
    spec = only_run(tiny_spec)
    assert run(spec, store).state == "diverged"
    root = tmp_path / "store" / "runs" / spec.run_id / "tensorboard"
    session = read(root)
    assert session_hparams(session)["values"]["optimizer.learning_rate"] == pytest.approx(10.0)
    assert "test_accuracy" not in session.Tags()["tensors"]
    # The NaN loss of the diverged epoch is left out, not written as NaN.
    assert "epoch_loss" not in read(root / "train").Tags()["tensors"]

"""The training options take effect in real training (`workers.runner.run` on a local store):
class weights and oversampling make a model that only predicts the majority class predict the
minority ones; a training fraction trains on that share of the split, at the same epoch length.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import SpecError
from service.lifecycle.documents import RunMetrics
from service.lifecycle.storage import run_key
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from workers.pipeline import training_dataset
from workers.runner import run

IMBALANCED = {
    "name": "imbalanced",
    "dataset": {
        "kind": "synthetic", "image_size": 16, "classes": 3, "samples_per_class": 120,
        "imbalance": 12.0, "noise": 0.6, "validation_split": 0.1,
    },
    "model": {"conv_blocks": [{"filters": 4}], "dense": [8]},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "training": {"epochs": 3, "batch_size": 16},
    "ablation": {"seeds": [0]},
}  # fmt: skip
"""120, 35 and 10 samples: three tiny epochs teach an unweighted model the largest class only."""


def trained(spec: dict, tmp_path, **training) -> RunMetrics:
    data = {**spec, "training": {**spec["training"], **training}}
    plan = build_plan(spec_from_data(data))
    (run_spec,) = plan.runs.values()
    store = LocalStore(tmp_path / run_spec.run_id)
    assert run(run_spec, store).state == "succeeded"
    return RunMetrics.model_validate(store.get_json(run_key(run_spec.run_id, "metrics.json")))


def minority_predictions(metrics: RunMetrics) -> int:
    """Test samples predicted as any class but the largest (class 0)."""
    return int(np.asarray(metrics.test.confusion_matrix)[:, 1:].sum())


@pytest.fixture(scope="module")
def unweighted(tmp_path_factory) -> RunMetrics:
    return trained(IMBALANCED, tmp_path_factory.mktemp("plain"))


def test_the_unweighted_model_predicts_only_the_largest_class(unweighted):
    assert minority_predictions(unweighted) == 0


@pytest.mark.parametrize(
    "option",
    [
        {"class_weight": "balanced"},
        {"class_weight": {"1": 8.0, "2": 24.0}},
        {"resample": "oversample"},
    ],
)
def test_class_weights_and_oversampling_make_the_model_predict_the_minority_classes(
    unweighted, tmp_path, option
):
    balanced = trained(IMBALANCED, tmp_path, **option)
    assert minority_predictions(balanced) >= 5
    assert balanced.test.per_class_accuracy[1] > unweighted.test.per_class_accuracy[1]
    # the same number of optimizer updates per epoch: oversampling does not lengthen an epoch
    assert len(balanced.history) == len(unweighted.history) == 3


def test_a_class_weight_for_a_missing_class_is_refused_by_the_plan_and_by_the_worker(tmp_path):
    data = {**IMBALANCED, "training": {**IMBALANCED["training"], "class_weight": {"hexagon": 2.0}}}
    with pytest.raises(SpecError, match="training.class_weight.hexagon"):
        build_plan(spec_from_data(data))
    # A run that reaches a worker without the plan's check (a hand-made message) fails too.
    (planned,) = build_plan(spec_from_data(IMBALANCED)).runs.values()
    training = planned.config.training.model_copy(update={"class_weight": {"hexagon": 2.0}})
    config = planned.config.model_copy(update={"training": training})
    run_spec = planned.model_copy(update={"config": config})
    with pytest.raises(Exception, match="training.class_weight.hexagon"):
        run(run_spec, LocalStore(tmp_path))


def test_a_small_training_fraction_is_memorized_while_the_full_split_is_learned(
    tiny_spec, tmp_path
):
    """One sample per class (a fraction far below 1% keeps one of each): the network fits its
    ten images perfectly and generalizes far worse than on the whole split."""
    tiny_spec["training"]["epochs"] = 4
    full = trained(tiny_spec, tmp_path / "full")
    few = trained(tiny_spec, tmp_path / "few", train_fraction=0.001)
    assert few.history[-1].accuracy == pytest.approx(1.0)
    assert few.test.accuracy < full.test.accuracy - 0.2


def test_the_pipeline_draws_each_epoch_from_the_fraction_only_at_the_full_length():
    x = np.arange(200, dtype=np.float32).reshape(200, 1, 1, 1)
    y = np.repeat(np.arange(4), 50)
    data = training_dataset(x, y, 32, seed=1, num_classes=4, one_hot=False, fraction=0.25)
    epochs = [np.concatenate([b[0].numpy().ravel() for b in data]) for _ in range(2)]
    assert [len(e) for e in epochs] == [200, 200]
    seen = set(epochs[0]) | set(epochs[1])
    assert len(seen) == 52 and all(np.bincount(y[np.asarray(sorted(seen), dtype=int)]) == 13)
    assert (epochs[0] != epochs[1]).any()  # reshuffled each epoch

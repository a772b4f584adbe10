"""Out-of-fold runs (`training.holdout`): the spec option (absent from the dump at its default,
bad values named), the fold assignment (a stratified, deterministic partition of the training
split that the run's seed never changes), and a real run on digits that stores the held-out
fold's predicted probabilities beside its metrics."""

from __future__ import annotations

import numpy as np
import pytest

from service import datasets
from service.datasets.splits import fold_of
from service.errors import DatasetError, SpecError
from service.holdout import HELD_OUT_FILE, read_held_out
from service.identity import RunSpec
from service.lifecycle.storage import run_key
from service.plan import build_plan
from service.spec import spec_from_data
from service.spec.models import TrainConfig
from service.spec.training import FULL_DUMP
from service.store import LocalStore

DIGITS = {
    "name": "folds",
    "dataset": {"kind": "digits", "validation_split": 0.15, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 8}], "dense": [32]},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "training": {"epochs": 2, "batch_size": 64, "holdout": {"folds": 3, "fold": 1}},
    "ablation": {"seeds": [4]},
}


def test_holdout_is_left_out_of_the_dump_at_its_default_and_changes_the_run_when_set():
    plain = TrainConfig()
    assert "holdout" not in plain.model_dump(mode="json")["training"]
    assert plain.model_dump(mode="json", context=FULL_DUMP)["training"]["holdout"] is None
    held = TrainConfig.model_validate({"training": {"holdout": {"folds": 4, "fold": 0}}})
    assert held.model_dump(mode="json")["training"]["holdout"] == {"folds": 4, "fold": 0}
    ids = {RunSpec(config=c, dataset_fingerprint="f", seed=0).run_id for c in (plain, held)}
    assert len(ids) == 2


@pytest.mark.parametrize(
    "holdout, words",
    [
        ({"folds": 3, "fold": 3}, "fold must be between 0 and folds - 1 = 2"),
        ({"folds": 1, "fold": 0}, "greater than or equal to 2"),
        ({"folds": 3}, "Field required"),
        ({"folds": 3, "fold": 0, "seed": 1}, "training.holdout.seed: unknown field"),
    ],
)
def test_a_bad_holdout_is_refused_naming_the_field(holdout, words):
    spec = {**DIGITS, "training": {**DIGITS["training"], "holdout": holdout}}
    with pytest.raises(SpecError) as caught:
        spec_from_data(spec)
    assert "training.holdout" in str(caught.value) and words in str(caught.value)


def test_the_folds_partition_the_split_stratified_and_balanced():
    rng = np.random.default_rng(3)
    y = rng.choice(5, size=503, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    folds = fold_of(y, 4, split_seed=7, field="training.holdout.folds")
    assert folds.shape == y.shape and set(folds.tolist()) == {0, 1, 2, 3}  # each sample once
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for label in range(5):
        per_fold = np.bincount(folds[y == label], minlength=4)
        assert per_fold.max() - per_fold.min() <= 1, (label, per_fold)


def test_the_folds_depend_on_the_split_seed_only():
    y = np.repeat(np.arange(3), 40)
    first = fold_of(y, 3, split_seed=0, field="f")
    assert np.array_equal(first, fold_of(y, 3, split_seed=0, field="f"))
    assert not np.array_equal(first, fold_of(y, 3, split_seed=1, field="f"))


def test_more_folds_than_samples_is_an_error_naming_the_field():
    with pytest.raises(DatasetError, match="training.holdout.folds: 5 folds of a training split of 3"):
        fold_of(np.array([0, 1, 0]), 5, split_seed=0, field="training.holdout.folds")


def test_more_folds_than_training_samples_is_refused_when_the_study_is_planned():
    tiny = {
        **DIGITS,
        "dataset": {"kind": "synthetic", "image_size": 8, "classes": 2, "samples_per_class": 6,
                    "validation_split": 0.0, "test_split": 0.25},
        "training": {**DIGITS["training"], "holdout": {"folds": 12, "fold": 0}},
    }
    with pytest.raises(SpecError) as refused:
        build_plan(spec_from_data(tiny))
    assert "training.holdout.folds" in str(refused.value) and "leave a fold empty" in str(refused.value)


def test_an_out_of_fold_run_stores_the_held_out_folds_probabilities(tmp_path):
    from workers.runner import run

    plan = build_plan(spec_from_data(DIGITS))
    (run_spec,) = plan.runs.values()
    store = LocalStore(tmp_path)
    assert run(run_spec, store).state == "succeeded"
    assert store.exists(run_key(run_spec.run_id, HELD_OUT_FILE))
    held = read_held_out(store, run_spec.run_id)
    assert (held.run_id, held.folds, held.fold) == (run_spec.run_id, 3, 1)

    # The held-out samples are exactly fold 1 of the training split, with their given labels.
    data = datasets.load(run_spec.config.dataset)
    folds = fold_of(data.y_train, 3, run_spec.config.dataset.split_seed, "f")
    assert held.samples == data.train_index[folds == 1].tolist()
    assert held.labels == data.y_train[folds == 1].tolist()
    assert held.names[0] == f"digits[{held.samples[0]}]"
    probabilities = np.asarray(held.probabilities)
    assert probabilities.shape == (len(held.samples), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    # Two epochs already learn digits: the held-out fold is mostly predicted right.
    assert (probabilities.argmax(axis=1) == np.asarray(held.labels)).mean() > 0.5

"""training.class_weight, training.resample and training.train_fraction: spec validation that
names the field, run ids of earlier specs unchanged, and the sampling each option implies."""

from __future__ import annotations

import numpy as np
import pytest

from service.datasets.balance import check_class_weight, class_weights, oversampled, train_subset
from service.errors import DatasetError, SpecError
from service.identity import RunSpec
from service.plan import build_plan
from service.spec import load_spec, spec_from_data
from service.spec.models import TrainConfig
from service.spec.training import FULL_DUMP

# Computed on the commit before these options existed (408aa31's service/spec/models.py):
# a field that appeared in the canonical dump at its default would change every run id.
SEED_STUDY_ID = "seed-study-df0ec5ad681a47eaf062ff46493775d4"
SEED_STUDY_RUN_IDS = [
    "0c7d02f3eb5b57d6", "1aeb7f60566463c4", "1ecfc16673c59be2", "213e8ec45cdbaa1b",
    "3b048bff5b7e5d0c", "414049bf05607e58", "542e71e3b017b15d", "5a8f7782136f67ec",
    "85ed470cbac103f7", "93868186ec89aea2", "b2b9d3b529191836", "c229e4bf8aa5814a",
]  # fmt: skip
SYNTHETIC = {
    "name": "syn",
    "dataset": {
        "kind": "synthetic", "image_size": 16, "classes": 3, "samples_per_class": 20,
        "imbalance": 4.0,
    },
    "model": {"conv_blocks": [{"filters": 4}], "dense": [8]},
    "training": {"epochs": 2, "batch_size": 16, "label_smoothing": 0.1},
    "ablation": {"seeds": [5], "factors": [{"path": "training.batch_size", "values": [8]}]},
}  # fmt: skip


def test_run_ids_and_study_id_of_the_example_spec_are_unchanged():
    plan = build_plan(load_spec("examples/seed-study.yaml"))
    assert plan.study_id == SEED_STUDY_ID
    assert sorted(plan.runs) == SEED_STUDY_RUN_IDS


def test_run_ids_of_a_synthetic_spec_are_unchanged():
    plan = build_plan(spec_from_data(SYNTHETIC))
    assert plan.study_id == "syn-a5e94797c8d8d41ce18a7f308223ab08"
    assert sorted(plan.runs) == ["09a5deb692f8a050", "144422bd1d91e4da"]


def test_options_at_their_default_are_left_out_of_the_dump_and_kept_with_full_dump():
    config = TrainConfig()
    assert {"class_weight", "resample", "train_fraction"}.isdisjoint(
        config.model_dump(mode="json")["training"]
    )
    full = config.model_dump(mode="json", context=FULL_DUMP)["training"]
    assert (full["class_weight"], full["resample"], full["train_fraction"]) == (None, "none", 1.0)
    assert TrainConfig.model_validate(config.model_dump(mode="json", context=FULL_DUMP)) == config


def test_an_option_set_to_its_default_is_the_same_run_as_leaving_it_out():
    plain = TrainConfig.model_validate({"training": {"epochs": 3}})
    explicit = TrainConfig.model_validate(
        {"training": {"epochs": 3, "train_fraction": 1.0, "resample": "none"}}
    )
    run = RunSpec(config=plain, dataset_fingerprint="f", seed=0)
    assert RunSpec(config=explicit, dataset_fingerprint="f", seed=0).run_id == run.run_id
    changed = TrainConfig.model_validate({"training": {"epochs": 3, "train_fraction": 0.5}})
    assert RunSpec(config=changed, dataset_fingerprint="f", seed=0).run_id != run.run_id


def test_class_weight_keys_read_from_yaml_ints_or_json_strings_give_one_config():
    from_yaml = TrainConfig.model_validate({"training": {"class_weight": {3: 2, "circle": 0.5}}})
    dumped = from_yaml.model_dump(mode="json")
    assert dumped["training"]["class_weight"] == {"3": 2.0, "circle": 0.5}
    assert TrainConfig.model_validate(dumped) == from_yaml


@pytest.mark.parametrize(
    ("training", "field", "words"),
    [
        ({"class_weight": "bal"}, "training.class_weight", '"balanced"'),
        ({"class_weight": {-1: 2.0}}, "training.class_weight", "index of 0 or more"),
        ({"class_weight": {"a": 0}}, "training.class_weight.a", "greater than 0"),
        ({"class_weight": {True: 1.0}}, "training.class_weight", "class name or a class index"),
        ({"resample": "under"}, "training.resample", "'oversample'"),
        ({"train_fraction": 0}, "training.train_fraction", "greater than 0"),
        ({"train_fraction": 1.5}, "training.train_fraction", "less than or equal to 1"),
    ],
)
def test_bad_training_options_are_named(training, field, words):
    with pytest.raises(SpecError) as caught:
        spec_from_data({"name": "x", "training": training})
    problems = dict(caught.value.problems)
    assert field in problems and words in problems[field]


# Class weights against the dataset's classes


def test_a_class_weight_for_a_class_the_dataset_lacks_names_the_key():
    names = ["circle", "square", "triangle"]
    check_class_weight({"circle": 2.0, "2": 1.5}, names)
    with pytest.raises(DatasetError) as caught:
        check_class_weight({"hexagon": 2.0}, names)
    assert caught.value.field == "training.class_weight.hexagon"
    assert "circle, square, triangle" in str(caught.value)
    with pytest.raises(DatasetError, match="no class '3'"):
        check_class_weight({"3": 2.0}, names)


def test_balanced_weights_follow_scikit_learns_rule_and_a_mapping_leaves_other_classes_at_one():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    balanced = class_weights("balanced", ["a", "b", "c"], y)
    assert balanced == pytest.approx({0: 100 / 180, 1: 100 / 90, 2: 100 / 30})
    assert class_weights({"c": 4.0, "1": 2.0}, ["a", "b", "c"], y) == {0: 1.0, 1: 2.0, 2: 4.0}
    assert class_weights(None, ["a", "b", "c"], y) is None


def test_a_class_named_like_a_number_is_read_by_name_first():
    assert class_weights({"1": 3.0}, ["1", "0"], np.array([0, 1])) == {0: 3.0, 1: 1.0}


# Sampling


def test_the_training_subset_is_stratified_and_nested():
    y = np.array([0] * 80 + [1] * 16 + [2] * 4)
    quarter, half = train_subset(y, 0.25, seed=3), train_subset(y, 0.5, seed=3)
    assert np.bincount(y[quarter]).tolist() == [20, 4, 1]
    assert np.bincount(y[half]).tolist() == [40, 8, 2]
    assert set(quarter) <= set(half)
    assert len(train_subset(y, 1.0, seed=3)) == len(y)


def test_oversampling_gives_every_class_the_largest_count_and_keeps_each_sample():
    y = np.array([0] * 50 + [1] * 12 + [2] * 5)
    picked = oversampled(y, seed=1)
    assert np.bincount(y[picked]).tolist() == [50, 50, 50]
    assert set(picked) == set(range(len(y)))

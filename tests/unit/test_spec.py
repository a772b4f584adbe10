"""Spec validation: strict types, unknown keys, ranges, and error messages naming the field."""

from __future__ import annotations

import json

import pytest

from service.errors import SpecError
from service.spec import load_spec, spec_from_data
from service.spec.models import StudySpec


def problems(data, source="spec.yaml") -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        spec_from_data(data, source)
    assert caught.value.source == source
    return dict(caught.value.problems)


def test_minimal_spec_gets_working_defaults():
    spec = spec_from_data({"name": "tiny"})
    assert spec.dataset.kind == "digits"
    assert [block.filters for block in spec.model.conv_blocks] == [32, 64]
    assert spec.optimizer.name == "adam"
    assert spec.ablation.seed_list == [0, 1, 2]


def test_unknown_key_is_named():
    assert problems({"name": "x", "optimizer": {"name": "adam", "lr": 0.1}}) == {
        "optimizer.lr": "unknown field"
    }


def test_wrong_type_is_named_and_not_coerced():
    found = problems({"name": "x", "training": {"batch_size": "32"}})
    assert "training.batch_size" in found
    assert "'32'" in found["training.batch_size"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"optimizer": {"name": "adam", "learning_rate": -0.001}}, "optimizer.learning_rate"),
        ({"model": {"dropout": 1.0}}, "model.dropout"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"model": {"conv_blocks": [{"filters": 0}]}}, "model.conv_blocks[0].filters"),
        ({"dataset": {"kind": "digits", "test_split": 1.5}}, "dataset.test_split"),
    ],
)
def test_out_of_range_values_are_named(data, field):
    assert field in problems({"name": "x", **data})


def test_unknown_union_tag_lists_the_choices():
    found = problems({"name": "x", "schedule": {"name": "cosinus"}})
    assert "'cosine'" in found["schedule"]


def test_missing_required_field_of_a_dataset_kind():
    assert problems({"name": "x", "dataset": {"kind": "npz"}}) == {"dataset.path": "Field required"}


def test_yaml_exponent_floats_are_floats(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\noptimizer: {name: adam, learning_rate: 1e-3}\n")
    assert load_spec(path).optimizer.learning_rate == pytest.approx(0.001)


def test_yaml_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nname: y\n")
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        load_spec(path)


def test_missing_spec_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match="nope.yaml: file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_non_mapping_spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(path)


def test_loco_needs_components_and_knows_them():
    assert "ablation" in problems({"name": "x", "ablation": {"strategy": "loco"}})
    found = problems({"name": "x", "ablation": {"strategy": "loco", "components": ["wings"]}})
    assert "unknown component 'wings'" in found["ablation.components"]


def test_factor_without_path_needs_mappings():
    found = problems({"name": "x", "ablation": {"factors": [{"values": [0.1]}]}})
    assert "mapping of dotted paths" in found["ablation.factors[0]"]


def test_bad_dataset_path_characters():
    found = problems({"name": "x", "dataset": {"kind": "npz", "path": "a\x00b.npz"}})
    assert "control characters" in found["dataset.path"]


def test_json_schema_describes_the_spec():
    schema = StudySpec.model_json_schema()
    assert {"name", "dataset", "model", "optimizer", "schedule", "ablation"} <= set(schema["properties"])
    json.dumps(schema)  # serialisable for `ablate schema`


def test_example_spec_is_valid():
    spec = load_spec("examples/seed-study.yaml")
    assert spec.optimizer.learning_rate == 0.005
    assert spec.model.dropout == 0.5
    assert spec.augmentation.horizontal_flip

"""Relative dataset paths in a spec file are read from the spec's folder, not the working
directory; the resolved path is what run identity uses; ids of existing specs do not change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from service.cli import cli
from service.errors import SpecError
from service.identity import study_id
from service.plan import build_plan
from service.spec import load_spec, spec_from_data
from service.spec.paths import is_relative_local, resolve_relative_paths
from tests.conftest import REPO, TINY

# Computed by the code before relative paths were resolved (commit 08364ee): a spec without a
# local path must keep its ids, so stored results stay reused.
SEED_STUDY_ID = "seed-study-df0ec5ad681a47eaf062ff46493775d4"
SEED_STUDY_RUN_IDS = [
    "0c7d02f3eb5b57d6", "1aeb7f60566463c4", "1ecfc16673c59be2", "213e8ec45cdbaa1b",
    "3b048bff5b7e5d0c", "414049bf05607e58", "542e71e3b017b15d", "5a8f7782136f67ec",
    "85ed470cbac103f7", "93868186ec89aea2", "b2b9d3b529191836", "c229e4bf8aa5814a",
]


def _npz(path: Path, classes: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x_train = rng.random((40, 8, 8)).astype("float32")
    np.savez(path, x_train=x_train, y_train=np.arange(40) % classes)
    return path


def _spec_file(folder: Path, dataset_path: str, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**TINY, "dataset": {"kind": "npz", "path": dataset_path}, **extra}
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec


def test_the_seed_study_keeps_its_study_id_and_run_ids():
    spec = load_spec(REPO / "examples" / "seed-study.yaml")
    assert study_id(spec) == SEED_STUDY_ID
    assert sorted(build_plan(spec).runs) == SEED_STUDY_RUN_IDS


def test_a_spec_with_an_absolute_path_keeps_the_ids_it_had_as_a_mapping(tmp_path, monkeypatch):
    data = _npz(tmp_path / "data" / "train.npz")
    spec_path = _spec_file(tmp_path / "specs", str(data))
    monkeypatch.chdir(tmp_path)
    from_file = load_spec(spec_path)
    from_data = spec_from_data({**TINY, "dataset": {"kind": "npz", "path": str(data)}})
    assert from_file.dataset.path == str(data)
    assert study_id(from_file) == study_id(from_data)
    assert sorted(build_plan(from_file).runs) == sorted(build_plan(from_data).runs)


def test_a_relative_path_is_read_from_the_spec_folder_not_the_working_directory(
    tmp_path, monkeypatch
):
    data = _npz(tmp_path / "project" / "data" / "train.npz")
    spec_path = _spec_file(tmp_path / "project" / "specs", "../data/train.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = load_spec(spec_path)

    assert spec.dataset.path == str(data)  # absolute, `..` collapsed
    absolute = spec_from_data({**TINY, "dataset": {"kind": "npz", "path": str(data)}})
    # identity uses the resolved path: the same runs as the spec that names the file absolutely
    assert sorted(build_plan(spec).runs) == sorted(build_plan(absolute).runs)
    assert study_id(spec) == study_id(absolute)


def test_the_same_spec_loaded_from_two_working_directories_is_the_same_study(tmp_path, monkeypatch):
    _npz(tmp_path / "specs" / "train.npz")
    spec_path = _spec_file(tmp_path / "specs", "train.npz")
    monkeypatch.chdir(tmp_path)
    first = load_spec("specs/spec.yaml")
    monkeypatch.chdir(tmp_path / "specs")
    second = load_spec("spec.yaml")
    assert study_id(first) == study_id(second) == study_id(load_spec(spec_path))


def test_a_missing_relative_path_names_the_file_field_and_both_paths(tmp_path, monkeypatch):
    spec_path = _spec_file(tmp_path / "specs", "data/missing.npz")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as caught:
        load_spec("specs/spec.yaml")
    message = str(caught.value)
    resolved = tmp_path / "specs" / "data" / "missing.npz"
    assert message.startswith("specs/spec.yaml: dataset.path: data/missing.npz: file not found")
    assert str(resolved) in message
    assert spec_path.exists()


def test_a_missing_image_folder_is_called_a_folder(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    dataset = {"kind": "image_folder", "path": "imgs"}
    spec_path.write_text(yaml.safe_dump({**TINY, "dataset": dataset}))
    with pytest.raises(SpecError, match=r"dataset\.path: imgs: folder not found"):
        load_spec(spec_path)


def test_factor_values_that_set_a_dataset_resolve_from_the_spec_folder(tmp_path):
    folder = tmp_path / "specs"
    for name in ("a.npz", "b.npz", "c.npz", "d.npz"):
        _npz(folder / name)
    ablation = {
        "seeds": 1,
        "factors": [
            {"path": "dataset.path", "values": ["b.npz"]},
            {"path": "dataset", "values": [{"kind": "npz", "path": "c.npz"}]},
            {"values": [{"dataset.path": "d.npz", "model.dropout": 0.1}]},
        ],
    }
    spec = load_spec(_spec_file(folder, "a.npz", ablation=ablation))
    factors = spec.ablation.factors
    assert factors[0].values == [str(folder / "b.npz")]
    assert factors[1].values[0]["path"] == str(folder / "c.npz")
    assert factors[2].values[0] == {"dataset.path": str(folder / "d.npz"), "model.dropout": 0.1}
    assert len(build_plan(spec).variants) == 4


def test_a_missing_factor_dataset_names_the_factor_value(tmp_path):
    _npz(tmp_path / "a.npz")
    ablation = {"seeds": 1, "factors": [{"path": "dataset.path", "values": ["gone.npz"]}]}
    expected = r"ablation\.factors\[0\]\.values\[0\]: gone\.npz: file not found"
    with pytest.raises(SpecError, match=expected):
        load_spec(_spec_file(tmp_path, "a.npz", ablation=ablation))


def test_a_mapping_keeps_its_relative_path_read_from_the_working_directory(tmp_path, monkeypatch):
    _npz(tmp_path / "train.npz")
    monkeypatch.chdir(tmp_path)
    spec = spec_from_data({**TINY, "dataset": {"kind": "npz", "path": "train.npz"}})
    assert spec.dataset.path == "train.npz"
    assert len(build_plan(spec).runs) == 1


@pytest.mark.parametrize(
    ("value", "relative"),
    [
        ("data.npz", True),
        ("../data/images", True),
        ("/data/train.npz", False),
        ("~/data/train.npz", False),
        ("s3://bucket/train.npz", False),
        ("http://example.com/x.npz", False),  # refused by the spec model, quoted as written
        ("data\x00.npz", False),
        ("x" * 1025, False),
        (7, False),
    ],
)
def test_only_valid_relative_local_paths_are_resolved(value, relative):
    assert is_relative_local(value) is relative


def test_resolving_does_not_modify_the_parsed_data(tmp_path):
    data = {"name": "s", "dataset": {"kind": "npz", "path": "x.npz"}}
    resolved, paths = resolve_relative_paths(data, tmp_path)
    assert data["dataset"]["path"] == "x.npz"
    assert resolved["dataset"]["path"] == str(tmp_path / "x.npz")
    assert [(p.field, p.written) for p in paths] == [("dataset.path", "x.npz")]


def test_dataset_errors_name_the_file_as_seen_from_the_working_directory(tmp_path, monkeypatch):
    _npz(tmp_path / "specs" / "one-class.npz", classes=1)
    _spec_file(tmp_path / "specs", "one-class.npz")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate", "specs/spec.yaml"])
    assert result.exit_code == 2, result.output
    assert "dataset.path: specs/one-class.npz: y_train has a single class" in result.output


def test_validate_from_another_folder_finds_the_data_beside_the_spec(tmp_path, monkeypatch):
    _npz(tmp_path / "specs" / "train.npz")
    _spec_file(tmp_path / "specs", "train.npz")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate", "specs/spec.yaml"])
    assert result.exit_code == 0, result.output
    assert "variants x" in result.output

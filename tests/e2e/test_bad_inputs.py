"""Bad input to `ablate run`: one clear error naming the field or file, exit code 2, and nothing
trained or written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from service.cli import cli


def npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def images(root: Path, classes: dict[str, int]) -> str:
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.full((12, 12, 3), index * 20, dtype=np.uint8)).save(root / name / f"{index}.png")
    return str(root)


X = np.random.default_rng(0).random((40, 8, 8, 1)).astype("float32")
Y = np.arange(40) % 4


def case_unknown_key(tmp):
    return {"optimizer": {"name": "adam", "lr": 0.1}}, "optimizer.lr: unknown field"


def case_wrong_type(tmp):
    return {"training": {"epochs": "ten"}}, "training.epochs: Input should be a valid integer"


def case_negative_learning_rate(tmp):
    return (
        {"optimizer": {"name": "adam", "learning_rate": -0.01}},
        "optimizer.learning_rate: Input should be greater than 0",
    )


def case_dropout_one(tmp):
    return {"model": {"dropout": 1.0}}, "model.dropout: Input should be less than 1"


def case_zero_epochs(tmp):
    return {"training": {"epochs": 0}}, "training.epochs: Input should be greater than 0"


def case_zero_batch(tmp):
    return {"training": {"batch_size": 0}}, "training.batch_size: Input should be greater than 0"


def case_unknown_factor_path(tmp):
    ablation = {"factors": [{"path": "model.drop_out", "values": [0.1]}]}
    return {"ablation": ablation}, "ablation.factors[0].values[0]: unknown factor path 'model.drop_out'"


def case_over_max_runs(tmp):
    ablation = {"seeds": 10, "max_runs": 5}
    return {"ablation": ablation}, "ablation.max_runs: the plan has 10 runs"


def case_missing_dataset_file(tmp):
    path = str(tmp / "nowhere.npz")
    return {"dataset": {"kind": "npz", "path": path}}, path


def case_npz_mismatched_lengths(tmp):
    path = npz(tmp / "d.npz", x_train=X, y_train=Y[:30])
    return {"dataset": {"kind": "npz", "path": path}}, "x_train has 40 rows but y_train has 30"


def case_npz_labels_out_of_range(tmp):
    path = npz(tmp / "d.npz", x_train=X, y_train=Y - 1)
    return {"dataset": {"kind": "npz", "path": path}}, "d.npz: y_train has negative labels"


def case_npz_test_labels_outside_training_classes(tmp):
    path = npz(tmp / "d.npz", x_train=X, y_train=Y, x_test=X[:5], y_test=np.array([0, 1, 2, 3, 9]))
    return {"dataset": {"kind": "npz", "path": path}}, "y_test has labels that are not in y_train: [9]"


def case_npz_single_class(tmp):
    path = npz(tmp / "d.npz", x_train=X, y_train=np.zeros(40, dtype=int))
    return {"dataset": {"kind": "npz", "path": path}}, "single class"


def case_npz_wrong_rank(tmp):
    path = npz(tmp / "d.npz", x_train=X.reshape(40, 64), y_train=Y)
    return {"dataset": {"kind": "npz", "path": path}}, "x_train has rank 2"


def case_npz_corrupt_file(tmp):
    path = tmp / "d.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    return {"dataset": {"kind": "npz", "path": str(path)}}, "d.npz"


def case_image_folder_non_image(tmp):
    root = images(tmp / "imgs", {"cat": 3, "dog": 3})
    (tmp / "imgs" / "cat" / "notes.txt").write_text("not an image")
    return {"dataset": {"kind": "image_folder", "path": root, "image_size": 8}}, "notes.txt is not an image"


def case_image_folder_empty_class(tmp):
    root = images(tmp / "imgs", {"cat": 3, "dog": 3})
    (tmp / "imgs" / "bird").mkdir()
    return {"dataset": {"kind": "image_folder", "path": root, "image_size": 8}}, "class 'bird'"


CASES = [value for name, value in sorted(globals().items()) if name.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("case_") for c in CASES])
def test_bad_input_is_refused_before_anything_is_written(case, tmp_path, tiny_spec, write_spec):
    changes, expected = case(tmp_path)
    for key, value in changes.items():
        tiny_spec[key] = {**tiny_spec.get(key, {}), **value} if key == "ablation" else value
    spec_path = write_spec(tiny_spec)
    store = tmp_path / "store"
    result = CliRunner().invoke(cli, ["run", str(spec_path), "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert result.output.count("error:") == 1
    assert "Traceback" not in result.output
    assert not store.exists()

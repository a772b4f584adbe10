"""service.datasets: shapes, splits, scaling, determinism and fingerprints of every kind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import service.datasets as datasets
from service.datasets import synthetic
from service.datasets.splits import split_indices
from service.errors import DatasetError
from service.spec.datasets import (
    DigitsDataset,
    ImageFolderDataset,
    KerasDataset,
    NpzDataset,
    SyntheticDataset,
)

REPO = Path(__file__).resolve().parents[2]


def digits(**options) -> DigitsDataset:
    return DigitsDataset(kind="digits", **options)


def shapes(**options) -> SyntheticDataset:
    return SyntheticDataset(kind="synthetic", **options)


def write_npz(path: Path, **arrays) -> NpzDataset:
    np.savez(path, **arrays)
    return NpzDataset(kind="npz", path=str(path))


def write_folder(root: Path, pixels: dict[str, list[int]], size: int = 10) -> Path:
    """One sub-folder per class, one grayscale PNG per value (a flat image of that value)."""
    for name, values in pixels.items():
        (root / name).mkdir(parents=True)
        for index, value in enumerate(values):
            Image.new("L", (size, size), value).save(root / name / f"{index}.png")
    return root


# digits


def test_digits_are_8x8_grayscale_with_ten_classes_scaled_into_unit_range():
    data = datasets.load(digits())
    assert data.x_train.shape[1:] == (8, 8, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.info.num_classes == 10 and data.class_names == [str(d) for d in range(10)]
    assert data.x_train.max() == pytest.approx(1.0)  # auto scale: raw digits go to 16
    assert data.x_test.max() <= 1.0 and data.x_val.max() <= 1.0
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert set(np.unique(data.y_train)) == set(range(10))


def test_inspect_reports_the_identity_and_sizes_that_load_produces():
    for spec in (digits(validation_split=0.25, test_split=0.3), shapes(imbalance=5.0)):
        info = datasets.inspect(spec)
        data = datasets.load(spec)
        assert info == data.info
        assert (info.train_size, info.validation_size, info.test_size) == (
            len(data.y_train),
            len(data.y_val),
            len(data.y_test),
        )


# splits


def test_split_is_identical_for_the_same_split_seed():
    first, second = datasets.load(digits(split_seed=3)), datasets.load(digits(split_seed=3))
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_split_differs_for_another_split_seed():
    first, second = datasets.load(digits(split_seed=0)), datasets.load(digits(split_seed=1))
    assert first.x_test.shape == second.x_test.shape
    assert not np.array_equal(first.x_test, second.x_test)


def test_split_indices_partition_every_sample_exactly_once():
    y = np.repeat(np.arange(4), 25)
    split = split_indices(y, False, 0.2, 0.3, split_seed=7, field="dataset")
    parts = [split.train, split.validation, split.test]
    assert [len(p) for p in parts] == [56, 14, 30]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert not set(split.train) & set(split.validation)
    assert not set(split.train) & set(split.test)
    assert not set(split.validation) & set(split.test)


def test_split_is_stratified_by_class():
    y = np.repeat([0, 1, 2], [60, 30, 10])
    split = split_indices(y, False, 0.0, 0.2, split_seed=0, field="dataset")
    assert np.bincount(y[split.test]).tolist() == [12, 6, 2]
    assert np.bincount(y[split.train]).tolist() == [48, 24, 8]


def test_split_falls_back_to_unstratified_when_a_class_has_one_sample():
    y = np.array([0] * 10 + [1] * 10 + [2])
    split = split_indices(y, False, 0.0, 0.2, split_seed=0, field="dataset")
    assert len(split.test) == 5 and len(split.train) == 16


def test_source_with_its_own_test_set_splits_only_validation_from_train():
    y = np.repeat([0, 1], 50)
    split = split_indices(y, True, 0.1, 0.5, split_seed=0, field="dataset")
    assert split.test is None
    assert (len(split.train), len(split.validation)) == (90, 10)


def test_validation_split_zero_gives_empty_validation_arrays_with_image_shape():
    data = datasets.load(digits(validation_split=0.0))
    assert data.x_val.shape == (0, 8, 8, 1) and data.x_val.dtype == np.float32
    assert data.y_val.shape == (0,)
    assert data.info.validation_size == 0


# scaling


@pytest.mark.parametrize(
    ("scale", "expected_max"), [("auto", 1.0), ("unit", 16 / 255), ("none", 16.0)]
)
def test_scale_divides_by_the_expected_constant(scale, expected_max):
    data = datasets.load(digits(scale=scale))
    assert data.x_train.dtype == np.float32
    assert float(data.x_train.max()) == pytest.approx(expected_max)


def test_standardize_uses_training_statistics_per_channel():
    data = datasets.load(shapes(channels=3, scale="standardize"))
    assert data.x_train.mean(axis=(0, 1, 2)) == pytest.approx([0, 0, 0], abs=1e-4)
    assert data.x_train.std(axis=(0, 1, 2)) == pytest.approx([1, 1, 1], abs=1e-3)
    assert abs(float(data.x_test.mean())) < 0.2  # same transform, not its own statistics


def test_auto_scale_leaves_data_already_in_unit_range_unchanged():
    spec = shapes(validation_split=0.0)
    assert np.array_equal(
        datasets.load(spec).x_train,
        datasets.load(spec.model_copy(update={"scale": "none"})).x_train,
    )


# synthetic


def test_synthetic_is_deterministic_per_seed_and_differs_across_seeds():
    same = [datasets.load(shapes(seed=4)) for _ in range(2)]
    other = datasets.load(shapes(seed=5))
    np.testing.assert_array_equal(same[0].x_train, same[1].x_train)
    assert same[0].info.fingerprint == same[1].info.fingerprint
    assert not np.array_equal(same[0].x_train, other.x_train)
    assert other.info.fingerprint != same[0].info.fingerprint


def test_synthetic_imbalance_gives_decreasing_class_counts():
    counts = synthetic.class_counts(shapes(classes=4, samples_per_class=80, imbalance=8.0))
    assert counts == [80, 40, 20, 10]
    tiny = synthetic.class_counts(shapes(classes=3, samples_per_class=4, imbalance=100.0))
    assert tiny[-1] == 2  # never fewer than 2, so every class can be stratified


def test_synthetic_rgb_has_three_distinct_channels_in_unit_range():
    x = datasets.load(shapes(channels=3, image_size=16, scale="none")).x_train
    assert x.shape[1:] == (16, 16, 3)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert not np.allclose(x[..., 0], x[..., 1])


def test_synthetic_classes_are_different_shapes():
    spec = shapes(classes=8, samples_per_class=50, noise=0.0)
    x = synthetic.generate(spec, synthetic.class_counts(spec))
    # Mean foreground coverage differs per shape (a bar covers far less than a square).
    coverage = [(x[k * 50 : (k + 1) * 50] > 0.5).mean() for k in range(8)]
    assert len({round(c, 3) for c in coverage}) == 8
    assert datasets.inspect(spec).class_names[:3] == ["circle", "square", "triangle"]


def test_synthetic_generates_800_images_well_under_a_second():
    spec = shapes(classes=4, samples_per_class=200, image_size=28)
    start = time.perf_counter()
    x = synthetic.generate(spec, synthetic.class_counts(spec))
    assert time.perf_counter() - start < 1.0
    assert x.shape == (800, 28, 28, 1) and x.dtype == np.float32


# npz


def test_npz_without_test_arrays_is_split_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    spec = write_npz(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (50, 6, 6, 3), dtype=np.uint8),
        y_train=np.arange(50) % 5,
    )
    data = datasets.load(spec)
    assert data.x_train.shape[1:] == (6, 6, 3)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (36, 4, 10)
    assert data.info.num_classes == 5 and data.class_names == ["0", "1", "2", "3", "4"]
    assert data.x_train.max() == pytest.approx(1.0)


def test_npz_with_test_arrays_uses_them_as_the_test_split(tmp_path):
    x_test = np.full((7, 4, 4), 2.0)
    spec = write_npz(
        tmp_path / "d.npz",
        x_train=np.full((20, 4, 4), 4.0),
        y_train=np.arange(20) % 2,
        x_test=x_test,
        y_test=np.array([0, 1, 1, 0, 1, 0, 0]),
    )
    data = datasets.load(spec)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (18, 2, 7)
    assert data.x_test.shape == (7, 4, 4, 1)  # (N, H, W) gained a channel axis
    np.testing.assert_array_equal(data.x_test, np.full((7, 4, 4, 1), 0.5))  # / training max 4
    assert data.y_test.tolist() == [0, 1, 1, 0, 1, 0, 0]
    assert datasets.inspect(spec).test_size == 7


def test_npz_non_contiguous_labels_are_remapped_in_sorted_order(tmp_path):
    spec = write_npz(
        tmp_path / "d.npz",
        x_train=np.arange(30, dtype=np.float32).reshape(30, 1, 1) * np.ones((1, 3, 3)),
        y_train=np.array([9, 1, 5] * 10).reshape(30, 1),  # (N, 1) labels are accepted too
        x_test=np.zeros((2, 3, 3)),
        y_test=np.array([5.0, 9.0]),  # integral floats are accepted
    )
    data = datasets.load(spec.model_copy(update={"validation_split": 0.0, "scale": "none"}))
    assert data.class_names == ["1", "5", "9"] and data.info.num_classes == 3
    assert data.y_test.tolist() == [1, 2]
    # Each image holds its own row number, so its label can be checked against the original.
    original = np.array([9, 1, 5] * 10)
    rows = data.x_train[:, 0, 0, 0].astype(int)
    assert [int(data.class_names[label]) for label in data.y_train] == original[rows].tolist()


# image_folder


def test_image_folder_loads_sorted_classes_resized_to_image_size(tmp_path):
    root = write_folder(tmp_path / "data", {"dog": [250, 240, 230], "cat": [10, 20, 30]})
    (root / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    (root / "cat" / ".hidden").write_bytes(b"junk")
    spec = ImageFolderDataset(
        kind="image_folder",
        path=str(root),
        image_size=8,
        color_mode="grayscale",
        validation_split=0.0,
        test_split=0.34,
        scale="none",
    )
    data = datasets.load(spec)
    assert data.class_names == ["cat", "dog"]
    assert data.x_train.shape[1:] == (8, 8, 1)
    assert len(data.y_train) + len(data.y_test) == 6
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    assert ((x.mean(axis=(1, 2, 3)) > 128) == (y == 1)).all()  # dog images are the bright ones
    assert datasets.inspect(spec) == data.info


def test_image_folder_rgb_mode_gives_three_channels(tmp_path):
    root = write_folder(tmp_path / "data", {"a": [0, 50], "b": [100, 150]})
    spec = ImageFolderDataset(
        kind="image_folder", path=str(root), image_size=12, test_split=0.5, validation_split=0.0
    )
    data = datasets.load(spec)
    assert data.x_train.shape[1:] == (12, 12, 3) and data.info.input_shape == (12, 12, 3)


# fingerprints


def test_npz_fingerprint_changes_with_one_value_and_not_with_split_options(tmp_path):
    x = np.zeros((20, 4, 4), dtype=np.uint8)
    y = np.arange(20) % 2
    spec = write_npz(tmp_path / "a.npz", x_train=x, y_train=y)
    x[3, 1, 1] = 1
    changed = write_npz(tmp_path / "b.npz", x_train=x, y_train=y)
    base = datasets.inspect(spec).fingerprint
    assert datasets.inspect(changed).fingerprint != base
    moved = spec.model_copy(
        update={"validation_split": 0.3, "test_split": 0.5, "split_seed": 9, "scale": "unit"}
    )
    assert datasets.inspect(moved).fingerprint == base


def test_image_folder_fingerprint_changes_when_one_image_changes(tmp_path):
    root = write_folder(tmp_path / "data", {"a": [0, 50], "b": [100, 150]})
    spec = ImageFolderDataset(
        kind="image_folder", path=str(root), test_split=0.5, validation_split=0.0
    )
    before = datasets.inspect(spec).fingerprint
    assert datasets.inspect(spec.model_copy(update={"split_seed": 3})).fingerprint == before
    image = Image.new("L", (10, 10), 50)
    image.putpixel((0, 0), 51)
    image.save(root / "a" / "1.png")
    assert datasets.inspect(spec).fingerprint != before


def test_builtin_fingerprints_ignore_split_options():
    for spec in (digits(), shapes(), KerasDataset(kind="mnist")):
        moved = spec.model_copy(update={"test_split": 0.5, "split_seed": 2, "scale": "none"})
        assert datasets.inspect(moved).fingerprint == datasets.inspect(spec).fingerprint


# keras.datasets


def test_inspect_of_keras_datasets_needs_no_tensorflow_and_no_network():
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network call')\n"
        "socket.socket.connect = socket.socket.connect_ex = refuse\n"
        "socket.getaddrinfo = socket.create_connection = refuse\n"
        "import service.datasets as d\n"
        "from service.spec.datasets import KerasDataset\n"
        "info = d.inspect(KerasDataset(kind='mnist'))\n"
        "assert info.input_shape == (28, 28, 1) and info.num_classes == 10, info\n"
        "assert (info.train_size, info.validation_size, info.test_size) == (54000, 6000, 10000)\n"
        "assert len(d.inspect(KerasDataset(kind='cifar100')).class_names) == 100\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_keras_inspect_shapes_match_the_known_table():
    info = datasets.inspect(KerasDataset(kind="cifar10", validation_split=0.0))
    assert info.input_shape == (32, 32, 3) and info.class_names[0] == "airplane"
    assert (info.train_size, info.validation_size, info.test_size) == (50000, 0, 10000)


def _fake_keras(load_data) -> types.ModuleType:
    keras = types.ModuleType("keras")
    keras.datasets = types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))
    return keras


def test_keras_load_uses_the_downloaded_test_set_and_adds_a_channel_axis(monkeypatch):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), np.arange(40, dtype=np.uint8) % 10)
    test = (rng.integers(0, 256, (15, 28, 28), dtype=np.uint8), np.arange(15, dtype=np.uint8) % 10)
    monkeypatch.setitem(sys.modules, "keras", _fake_keras(lambda: (train, test)))
    data = datasets.load(KerasDataset(kind="mnist", scale="unit"))
    assert data.x_test.shape == (15, 28, 28, 1) and data.x_train.shape[1:] == (28, 28, 1)
    np.testing.assert_allclose(data.x_test[..., 0], test[0] / 255.0, rtol=1e-6)
    assert (len(data.y_train), len(data.y_val)) == (36, 4)
    assert data.y_test.dtype == np.int64


def test_keras_load_offline_raises_a_dataset_error_that_explains_the_download(monkeypatch):
    def offline():
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "keras", _fake_keras(offline))
    with pytest.raises(DatasetError) as caught:
        datasets.load(KerasDataset(kind="mnist"))
    assert caught.value.field == "dataset.kind"
    assert "could not download mnist" in str(caught.value)
    assert "~/.keras/datasets" in str(caught.value) and "name resolution" in str(caught.value)

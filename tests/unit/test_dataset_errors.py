"""service.datasets: every unusable dataset raises DatasetError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import service.datasets as datasets
from service.errors import DatasetError
from service.spec.datasets import ImageFolderDataset, NpzDataset, SyntheticDataset

X = np.zeros((10, 4, 4), dtype=np.uint8)
Y = np.arange(10) % 2


def npz_spec(path: Path, **options) -> NpzDataset:
    return NpzDataset(kind="npz", path=str(path), **options)


def folder_spec(path: Path, **options) -> ImageFolderDataset:
    return ImageFolderDataset(kind="image_folder", path=str(path), image_size=8, **options)


def raises(spec, *fragments: str, field: str = "dataset.path", options=None) -> DatasetError:
    """inspect and load both refuse `spec` (read as `options` allow) with a message holding
    every fragment."""
    for call in (datasets.inspect, datasets.load):
        with pytest.raises(DatasetError) as caught:
            call(spec, options=options) if options is not None else call(spec)
        assert caught.value.field == field
        for fragment in fragments:
            assert fragment in str(caught.value)
    return caught.value


# npz: the file itself


def test_npz_missing_file_is_reported_as_not_found(tmp_path):
    path = tmp_path / "nope.npz"
    raises(npz_spec(path), str(path), "file not found")


def test_npz_that_is_not_a_zip_is_not_a_valid_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"these bytes are not an archive")
    raises(npz_spec(path), str(path), "not a valid .npz file")


def test_npz_truncated_zip_is_not_a_valid_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x_train=X, y_train=Y)
    path = tmp_path / "cut.npz"
    path.write_bytes(good.read_bytes()[:300])
    raises(npz_spec(path), str(path), "not a valid .npz file")


def test_npz_with_pickled_object_arrays_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([object(), 1], dtype=object), y_train=Y)
    raises(npz_spec(path), str(path), "x_train cannot be read without pickle")


def test_npy_file_is_not_an_npz_archive(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, X)
    raises(npz_spec(path), str(path), "single .npy array")


def test_npz_path_that_is_a_directory_is_refused(tmp_path):
    raises(npz_spec(tmp_path), str(tmp_path), "is a directory")


def test_s3_uri_with_an_invalid_bucket_name_is_refused_before_any_request():
    spec = NpzDataset(kind="npz", path="s3://Not_A_Bucket/data.npz")
    raises(spec, "s3://Not_A_Bucket/data.npz", "breaks S3's rules")


# npz: the arrays inside


BAD_ARRAYS = {
    "missing_x_train": ({"y_train": Y}, ["missing x_train"]),
    "missing_y_train": ({"x_train": X}, ["missing y_train"]),
    "x_test_without_y_test": ({"x_train": X, "y_train": Y, "x_test": X}, ["x_test without y_test"]),
    "y_test_without_x_test": ({"x_train": X, "y_train": Y, "y_test": Y}, ["y_test without x_test"]),
    "x_rank_2": (
        {"x_train": np.zeros((10, 16)), "y_train": Y},
        ["x_train has rank 2, expected (N, H, W) or (N, H, W, C)"],
    ),
    "x_rank_5": ({"x_train": np.zeros((10, 2, 2, 2, 1)), "y_train": Y}, ["x_train has rank 5"]),
    "x_two_channels": (
        {"x_train": np.zeros((10, 4, 4, 2)), "y_train": Y},
        ["x_train has 2 channels"],
    ),
    "length_mismatch": (
        {"x_train": np.zeros((100, 4, 4)), "y_train": np.arange(90) % 2},
        ["x_train has 100 rows but y_train has 90"],
    ),
    "test_length_mismatch": (
        {"x_train": X, "y_train": Y, "x_test": X, "y_test": Y[:4]},
        ["x_test has 10 rows but y_test has 4"],
    ),
    "fractional_labels": ({"x_train": X, "y_train": Y + 0.5}, ["y_train has non-integer labels"]),
    "nan_labels": (
        {"x_train": X, "y_train": np.full(10, np.nan)},
        ["y_train has non-integer labels"],
    ),
    "string_labels": (
        {"x_train": X, "y_train": np.array(["a", "b"] * 5)},
        ["y_train has dtype <U1"],
    ),
    "negative_labels": (
        {"x_train": X, "y_train": Y - 1},
        ["y_train has negative labels (e.g. -1)"],
    ),
    "one_hot_labels": ({"x_train": X, "y_train": np.eye(2)[Y]}, ["y_train has shape (10, 2)"]),
    "single_class": (
        {"x_train": X, "y_train": np.full(10, 3)},
        ["y_train has a single class (3); a classifier needs at least 2"],
    ),
    "test_labels_outside_training_classes": (
        {"x_train": X, "y_train": Y, "x_test": X[:3], "y_test": np.array([0, 1, 7])},
        ["y_test has labels that are not in y_train: [7]"],
    ),
    "test_shape_differs": (
        {"x_train": X, "y_train": Y, "x_test": np.zeros((3, 5, 5)), "y_test": Y[:3]},
        ["x_test images have shape (5, 5, 1) but x_train images have shape (4, 4, 1)"],
    ),
    "non_numeric_x": ({"x_train": np.array(["img"] * 10), "y_train": Y}, ["x_train has dtype <U3"]),
    "nan_in_x": (
        {"x_train": np.where(X == 0, np.nan, 0.0), "y_train": Y},
        ["x_train contains NaN"],
    ),
    "inf_in_x_test": (
        {"x_train": X, "y_train": Y, "x_test": np.full((2, 4, 4), np.inf), "y_test": Y[:2]},
        ["x_test contains NaN or infinite values"],
    ),
    "empty_x": ({"x_train": np.zeros((0, 4, 4)), "y_train": np.zeros(0)}, ["x_train is empty"]),
    "empty_y": ({"x_train": X, "y_train": np.zeros((0,))}, ["y_train is empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_npz_with_bad_arrays_names_the_file_and_the_problem(tmp_path, case):
    arrays, fragments = BAD_ARRAYS[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    raises(npz_spec(path), str(path), *fragments)


# image_folder


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (6, 6), value).save(path)


def _two_classes(root: Path) -> Path:
    for name in ("cat", "dog"):
        for index in range(3):
            _png(root / name / f"{index}.png", 40 * index)
    return root


def test_image_folder_missing_is_reported_as_not_found(tmp_path):
    path = tmp_path / "absent"
    raises(folder_spec(path), str(path), "folder not found")


def test_image_folder_path_that_is_a_file_is_not_a_directory(tmp_path):
    path = tmp_path / "file.png"
    _png(path)
    raises(folder_spec(path), str(path), "is not a directory")


def test_image_folder_with_one_class_folder_is_refused(tmp_path):
    _png(tmp_path / "data" / "cat" / "0.png")
    raises(
        folder_spec(tmp_path / "data"), str(tmp_path / "data"), "1 class folder(s)", "at least 2"
    )


def test_image_folder_with_an_empty_class_folder_names_the_class(tmp_path):
    root = _two_classes(tmp_path / "data")
    (root / "emu").mkdir()
    (root / "emu" / ".keep").write_bytes(b"")  # hidden files do not count as images
    raises(folder_spec(root), f"class 'emu' ({root / 'emu'}) has no images")


def test_image_folder_with_a_non_image_file_names_that_file(tmp_path):
    root = _two_classes(tmp_path / "data")
    (root / "cat" / "notes.txt").write_text("not a picture")
    raises(folder_spec(root), f"{root / 'cat' / 'notes.txt'} is not an image Pillow can read")


def test_image_folder_with_a_truncated_png_names_that_file(tmp_path):
    root = _two_classes(tmp_path / "data")
    broken = root / "dog" / "1.png"
    broken.write_bytes(broken.read_bytes()[:20])
    raises(folder_spec(root), f"{broken} is not an image Pillow can read")


def test_image_folder_with_a_stray_top_level_file_is_refused(tmp_path):
    root = _two_classes(tmp_path / "data")
    (root / "labels.csv").write_text("cat,dog")
    raises(folder_spec(root), str(root / "labels.csv"), "top level")


def test_image_folder_with_a_nested_folder_in_a_class_is_refused(tmp_path):
    root = _two_classes(tmp_path / "data")
    _png(root / "cat" / "more" / "0.png")
    raises(folder_spec(root), str(root / "cat" / "more"), "inside class 'cat'")


# splits


def test_test_split_that_leaves_no_training_sample_is_refused(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, x_train=X[:2], y_train=Y[:2])
    raises(
        npz_spec(path, test_split=0.9), "test_split=0.9 of 2 samples", field="dataset.test_split"
    )


def test_validation_split_that_leaves_no_training_sample_is_refused():
    spec = SyntheticDataset(kind="synthetic", classes=2, samples_per_class=4, validation_split=0.9)
    raises(spec, "validation_split=0.9 of 6 samples", field="dataset.validation_split")


def test_split_leaving_a_single_training_class_is_refused(tmp_path):
    path = tmp_path / "lopsided.npz"
    np.savez(path, x_train=np.zeros((3, 4, 4)), y_train=np.array([0, 0, 1]))
    # 3 samples, 1 held out: too few to stratify, so some seeds hold out the only class-1 sample.
    for seed in range(20):
        spec = npz_spec(path, validation_split=0.0, test_split=0.3, split_seed=seed)
        try:
            datasets.inspect(spec)
        except DatasetError as exc:
            assert exc.field == "dataset.test_split"
            assert "training set holds a single class (0)" in str(exc)
            return
    pytest.fail("no split_seed held out the only sample of class 1")


def test_error_field_follows_the_caller_prefix(tmp_path):
    spec = npz_spec(tmp_path / "nope.npz")
    with pytest.raises(DatasetError) as caught:
        datasets.inspect(spec, field="ablation.factors[0].values[1].dataset")
    assert caught.value.field == "ablation.factors[0].values[1].dataset.path"


def test_dataset_paths_cannot_escape_the_allowed_roots(tmp_path, monkeypatch):
    from service.datasets.options import DataOptions
    from service.settings import Settings

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside.npz"
    np.savez(outside, x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 0, 1]))
    (allowed / "link.npz").symlink_to(outside)
    monkeypatch.setenv("ABLATE_DATA_ROOTS", str(allowed))
    options = DataOptions.from_settings(Settings())  # as an edge reads them
    for path in (str(outside), str(allowed / ".." / "outside.npz"), str(allowed / "link.npz")):
        raises(NpzDataset(kind="npz", path=path), "outside the allowed data folders", options=options)
    inside = allowed / "inside.npz"
    np.savez(inside, x_train=np.zeros((20, 8, 8)), y_train=np.arange(20) % 2)
    assert datasets.inspect(NpzDataset(kind="npz", path=str(inside)), options=options).num_classes == 2

"""Data bombs and escapes: arrays declared larger than ABLATE_MAX_DATASET_BYTES are refused from
their headers, before anything is loaded; images are bounded in pixels; every file of an image
folder is held to ABLATE_DATA_ROOTS after its links are resolved; a worker without roots warns."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import service.datasets.image_folder as image_folder
from service import datasets
from service.datasets.options import DataOptions
from service.errors import DatasetError
from service.settings import Settings
from service.spec.datasets import ImageFolderDataset, NpzDataset
from tests.conftest import REPO


@pytest.fixture
def settings_env(monkeypatch):
    """Sets ABLATE_* variables; returns the dataset options an edge (CLI, client, worker) reads
    from them and hands to the dataset modules."""

    def set_env(**values: str) -> DataOptions:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return DataOptions.from_settings(Settings())

    return set_env


def _images(folder, classes: dict[str, int]) -> None:
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.full((12, 12, 3), index * 30, np.uint8)).save(folder / name / f"{index}.png")


def test_an_npz_declaring_more_than_the_limit_is_refused_before_loading(tmp_path, settings_env):
    options = settings_env(ABLATE_MAX_DATASET_BYTES=str(10 * 1024 * 1024))
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x_train=np.zeros((100, 500, 500), np.float32), y_train=np.arange(100) % 2)
    assert path.stat().st_size < 2 * 1024 * 1024  # 100 MB of arrays in a small file

    tracemalloc.start()
    with pytest.raises(
        DatasetError,
        match=r"its arrays declare 100000\d+ bytes, more than the 10485760 allowed \(ABLATE_MAX_DATASET_BYTES\)",
    ):
        datasets.inspect(NpzDataset(kind="npz", path=str(path)), options=options)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"{peak} bytes allocated before the refusal"


def test_an_npz_file_larger_than_the_limit_is_refused_unread(tmp_path, settings_env):
    options = settings_env(ABLATE_MAX_DATASET_BYTES="1000")
    path = tmp_path / "big.npz"
    np.savez(path, x_train=np.random.default_rng(0).random((40, 8, 8)), y_train=np.arange(40) % 2)
    with pytest.raises(DatasetError, match=r"bytes, more than the 1000 allowed \(ABLATE_MAX_DATASET_BYTES\)"):
        datasets.inspect(NpzDataset(kind="npz", path=str(path)), options=options)


def test_images_are_bounded_in_pixels(tmp_path, monkeypatch):
    _images(tmp_path / "images", {"cat": 2, "dog": 2})
    monkeypatch.setattr(image_folder, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetError, match=r"is 12x12 pixels, more than the 100 an image may have"):
        datasets.inspect(ImageFolderDataset(kind="image_folder", path=str(tmp_path / "images")))


def test_decoded_image_folder_is_bounded(tmp_path, settings_env):
    options = settings_env(ABLATE_MAX_DATASET_BYTES="20000")
    _images(tmp_path / "images", {"cat": 2, "dog": 2})
    spec = ImageFolderDataset(kind="image_folder", path=str(tmp_path / "images"), image_size=64)
    with pytest.raises(
        DatasetError, match=r"4 images of \d+ bytes \(49152 bytes decoded\) are more than the 20000 allowed"
    ):
        datasets.inspect(spec, options=options)


@pytest.mark.parametrize("linked", ["image", "class folder"])
def test_a_link_out_of_the_data_roots_inside_an_image_folder_is_refused(tmp_path, settings_env, linked):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _images(root / "images", {"cat": 2, "dog": 2})
    _images(outside, {"secret": 1})
    if linked == "image":
        (root / "images" / "dog" / "stolen.png").symlink_to(outside / "secret" / "0.png")
    else:
        (root / "images" / "bird").symlink_to(outside / "secret", target_is_directory=True)
    options = settings_env(ABLATE_DATA_ROOTS=str(root))
    spec = ImageFolderDataset(kind="image_folder", path=str(root / "images"))
    with pytest.raises(DatasetError, match=r"outside the allowed data folders"):
        datasets.inspect(spec, options=options)


def test_links_within_the_data_roots_still_load(tmp_path, settings_env):
    root = tmp_path / "root"
    _images(root / "images", {"cat": 2, "dog": 2})
    (root / "images" / "dog" / "again.png").symlink_to(root / "images" / "cat" / "0.png")
    options = settings_env(ABLATE_DATA_ROOTS=str(root))
    info = datasets.inspect(ImageFolderDataset(kind="image_folder", path=str(root / "images")), options=options)
    assert info.train_size + info.validation_size + info.test_size == 5


@pytest.mark.parametrize("roots", [None, "/data"])
def test_a_worker_without_data_roots_warns(roots):
    env = {k: v for k, v in os.environ.items() if k != "ABLATE_DATA_ROOTS"}
    if roots:
        env["ABLATE_DATA_ROOTS"] = roots
    result = subprocess.run(
        [sys.executable, "-c", "import workers.app"],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ("ABLATE_DATA_ROOTS is not set" in result.stderr) == (roots is None), result.stderr

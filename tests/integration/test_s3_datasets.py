"""Datasets read from S3 (the session's moto server): an object larger than
ABLATE_MAX_DATASET_BYTES is refused from its size, before anything is downloaded. Moved from the
unit tests (tests/unit/test_dataset_hostile.py): it needs a real S3 server."""

from __future__ import annotations

import numpy as np
import pytest

from service import datasets
from service.datasets.options import DataOptions
from service.errors import DatasetError
from service.settings import Settings
from service.spec.datasets import NpzDataset


@pytest.fixture
def settings_env(monkeypatch):
    """Sets ABLATE_* variables; returns the dataset options an edge reads from them."""

    def set_env(**values: str) -> DataOptions:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return DataOptions.from_settings(Settings())

    return set_env


def test_an_s3_dataset_larger_than_the_limit_is_not_downloaded(tmp_path, s3_env, settings_env):
    import boto3

    bucket = s3_env.removeprefix("s3://").split("/")[0]
    local = tmp_path / "data.npz"
    np.savez(local, x_train=np.random.default_rng(0).random((40, 8, 8)), y_train=np.arange(40) % 2)
    boto3.client("s3").upload_file(str(local), bucket, "sets/data.npz")
    options = settings_env(ABLATE_MAX_DATASET_BYTES="1000", ABLATE_DATASET_CACHE=str(tmp_path / "cache"))
    with pytest.raises(
        DatasetError,
        match=r"data.npz: \d+ bytes, more than the 1000 allowed \(ABLATE_MAX_DATASET_BYTES\)",
    ):
        datasets.inspect(NpzDataset(kind="npz", path=f"s3://{bucket}/sets/data.npz"), options=options)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())

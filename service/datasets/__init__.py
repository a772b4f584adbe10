"""Datasets: validate a spec's dataset section (`inspect`) and load it split and scaled (`load`).

Imports only numpy, scikit-learn and Pillow, so the client can check datasets without
TensorFlow; keras is imported lazily, and only when a worker loads a keras.datasets classic.
Each kind's module reads its data into a `Source`; splitting and scaling are shared here so
every kind behaves the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.datasets import builtin, image_folder, npz, synthetic
from service.datasets.options import DEFAULT_DATA_OPTIONS, DataOptions
from service.datasets.source import Source
from service.datasets.splits import scale, split_indices, split_sizes
from service.errors import DatasetError
from service.spec.datasets import (
    DigitsDataset,
    ImageFolderDataset,
    KerasDataset,
    NpzDataset,
    SyntheticDataset,
)

__all__ = ["DataOptions", "DatasetInfo", "SplitArrays", "inspect", "load"]

AnyDataset = DigitsDataset | SyntheticDataset | KerasDataset | NpzDataset | ImageFolderDataset

_READERS: dict[str, Callable[..., Source]] = {
    "digits": builtin.read_digits,
    "mnist": builtin.read_keras,
    "fashion_mnist": builtin.read_keras,
    "cifar10": builtin.read_keras,
    "cifar100": builtin.read_keras,
    "synthetic": synthetic.read,
}
_FILE_READERS: dict[str, Callable[..., Source]] = {"npz": npz.read, "image_folder": image_folder.read}
"""Kinds read from files: they obey the `DataOptions` (allowed folders, size limit, S3 cache)."""


@dataclass(frozen=True)
class DatasetInfo:
    fingerprint: str
    """Hex digest of the raw data; independent of the split and scale options."""
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: list[str]
    train_size: int
    validation_size: int
    test_size: int


@dataclass
class SplitArrays:
    """float32 (N, H, W, C) images, scaled; int64 labels 0..K-1. x_val/y_val may have 0 rows."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    info: DatasetInfo
    train_index: np.ndarray | None = None
    """Each training sample's index in the source's own training data (the npz's x_train,
    digits' order, an image folder's sorted files): its identity in the user's dataset."""


def inspect(spec: AnyDataset, field: str = "dataset", options: DataOptions = DEFAULT_DATA_OPTIONS) -> DatasetInfo:
    """Validate the dataset without TensorFlow or downloads and return its identity and sizes."""
    source = _read(spec, field, options, arrays=False)
    has_test = source.n_test is not None
    if source.y_train is None:  # keras.datasets: labels unknown until downloaded
        n_train, n_val, n_test = split_sizes(
            source.n_train, has_test, spec.validation_split, spec.test_split, field
        )
    else:
        split = split_indices(
            source.y_train, has_test, spec.validation_split, spec.test_split, spec.split_seed, field
        )
        n_train, n_val = len(split.train), len(split.validation)
        n_test = None if split.test is None else len(split.test)
    return _info(source, n_train, n_val, source.n_test if has_test else n_test)


def load(spec: AnyDataset, field: str = "dataset", options: DataOptions = DEFAULT_DATA_OPTIONS) -> SplitArrays:
    """Load, validate, split (by `split_seed`) and scale the dataset. Used by the training worker."""
    source = _read(spec, field, options, arrays=True)
    x, y = source.x_train, source.y_train
    split = split_indices(
        y, source.n_test is not None, spec.validation_split, spec.test_split, spec.split_seed, field
    )
    if split.test is None:
        x_test, y_test = source.x_test, source.y_test
    else:
        x_test, y_test = x[split.test], y[split.test]
    x_train, (x_val, x_test) = scale(x[split.train], [x[split.validation], x_test], spec.scale)
    info = _info(source, len(split.train), len(split.validation), len(y_test))
    return SplitArrays(
        x_train=x_train,
        y_train=y[split.train],
        x_val=x_val,
        y_val=y[split.validation],
        x_test=x_test,
        y_test=np.asarray(y_test, dtype=np.int64),
        class_names=list(source.class_names),
        info=info,
        train_index=split.train,
    )


def _read(spec: AnyDataset, field: str, options: DataOptions, arrays: bool) -> Source:
    if spec.kind in _FILE_READERS:
        return _FILE_READERS[spec.kind](spec, field, arrays, options)
    reader = _READERS.get(spec.kind)
    if reader is None:
        raise DatasetError(f"{field}.kind", f"unknown dataset kind {spec.kind!r}")
    return reader(spec, field, arrays)


def _info(source: Source, n_train: int, n_val: int, n_test: int) -> DatasetInfo:
    return DatasetInfo(
        fingerprint=source.fingerprint,
        input_shape=source.input_shape,
        num_classes=len(source.class_names),
        class_names=list(source.class_names),
        train_size=n_train,
        validation_size=n_val,
        test_size=n_test,
    )

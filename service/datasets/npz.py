"""Datasets stored as one .npz file: x_train, y_train and optionally x_test, y_test.

Every problem is reported with the file's path and the array at fault, because the user will fix
the file, not the spec. Labels that are not 0..K-1 (e.g. {1, 5, 9}) are remapped to 0..K-1 in
sorted order and keep their original values as class names.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from service.datasets.options import DataOptions
from service.datasets.source import Source, local_path, sha256_handle
from service.errors import DatasetError
from service.files import NotARegularFile, open_regular
from service.spec.datasets import NpzDataset
from service.text import printable

Fail = Callable[[str], DatasetError]


def read(spec: NpzDataset, field: str, arrays: bool, options: DataOptions) -> Source:
    field = f"{field}.path"
    path = local_path(spec.path, field, options)
    fingerprint, data = _read_arrays(path, field, options.max_dataset_bytes)

    def fail(message: str) -> DatasetError:
        return DatasetError(field, f"{path}: {message}")

    x_train = _images(data["x_train"], "x_train", fail)
    y_train = _labels(data["y_train"], "y_train", fail)
    if len(x_train) != len(y_train):
        raise fail(f"x_train has {len(x_train)} rows but y_train has {len(y_train)}")
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise fail(f"y_train has a single class ({classes[0]}); a classifier needs at least 2")
    contiguous = classes[-1] == len(classes) - 1
    source = Source(
        fingerprint=fingerprint,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        class_names=[str(c) for c in classes],
        n_train=len(y_train),
        y_train=y_train if contiguous else np.searchsorted(classes, y_train),
        x_train=x_train if arrays else None,
    )
    if "x_test" in data:
        x_test = _images(data["x_test"], "x_test", fail)
        y_test = _labels(data["y_test"], "y_test", fail)
        if len(x_test) != len(y_test):
            raise fail(f"x_test has {len(x_test)} rows but y_test has {len(y_test)}")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise fail(
                f"x_test images have shape {x_test.shape[1:]} but x_train images have "
                f"shape {x_train.shape[1:]}"
            )
        unknown = np.setdiff1d(y_test, classes)
        if len(unknown):
            raise fail(f"y_test has labels that are not in y_train: {unknown[:10].tolist()}")
        source.n_test = len(y_test)
        source.y_test = y_test if contiguous else np.searchsorted(classes, y_test)
        source.x_test = x_test if arrays else None
    return source


def _read_arrays(path: Path, field: str, limit: int) -> tuple[str, dict[str, np.ndarray]]:
    """(sha256 of the file, its arrays), all read from one descriptor of a regular file of at
    most `limit` bytes (ABLATE_MAX_DATASET_BYTES)."""
    try:
        handle = open_regular(path, limit)
    except NotARegularFile as exc:
        if str(exc).startswith("is a directory"):
            raise DatasetError(field, f"{path}: is a directory, not an .npz file") from None
        raise DatasetError(
            field, f"{path}: {exc} (ABLATE_MAX_DATASET_BYTES)" if "allowed" in str(exc) else f"{path}: {exc}"
        ) from None
    with handle:
        fingerprint = sha256_handle(handle)
        handle.seek(0)
        _check_headers(handle, path, field, limit)
        handle.seek(0)
        return fingerprint, _load(handle, path, field)


def _check_headers(handle: BinaryIO, path: Path, field: str, limit: int) -> None:
    """Before anything is loaded: each array's header against the bytes the archive holds for
    it (a header that lies), and the sizes they declare against ABLATE_MAX_DATASET_BYTES (an
    archive of zeros compresses a gigabyte array into a few megabytes)."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip archive: np.load says what it is
    total = 0
    with archive:
        for name in ("x_train", "y_train", "x_test", "y_test"):
            try:
                info = archive.getinfo(f"{name}.npy")
            except KeyError:
                continue
            shape, dtype, header = _header(archive, info, path, field, name)
            if dtype.hasobject:
                raise DatasetError(field, f"{path}: {name} cannot be read without pickle (an object array)")
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size != header + nbytes:
                raise DatasetError(
                    field,
                    f"{path}: {name}'s header declares shape {shape} of {dtype} ({nbytes} bytes) "
                    f"but the archive holds {max(0, info.file_size - header)} bytes of data: "
                    "the file is corrupt",
                )
            total += nbytes
    if total > limit:
        raise DatasetError(
            field,
            f"{path}: its arrays declare {total} bytes, more than the {limit} allowed "
            "(ABLATE_MAX_DATASET_BYTES)",
        )


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, field: str, name: str):
    """(shape, dtype, header length) of one .npy member, read from its first bytes only."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            return tuple(int(d) for d in shape), dtype, member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError) as exc:
        raise DatasetError(field, f"{path}: {name} has a corrupt .npy header ({printable(str(exc), 200)})") from None


def _load(handle: BinaryIO, path: Path, field: str) -> dict[str, np.ndarray]:
    try:
        archive = np.load(handle, allow_pickle=False)
    except ValueError:  # numpy's answer to bytes that are neither .npy nor a zip: try pickle
        raise DatasetError(
            field, f"{path}: not a valid .npz file (not a zip archive of arrays)"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(field, f"{path}: not a valid .npz file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(
            field, f"{path}: is a single .npy array, not an .npz with x_train and y_train"
        )
    with archive:
        names = set(archive.files)
        missing = [name for name in ("x_train", "y_train") if name not in names]
        if missing:
            raise DatasetError(
                field,
                f"{path}: missing {' and '.join(missing)} (it holds: {sorted(names) or 'nothing'})",
            )
        if ("x_test" in names) != ("y_test" in names):
            present, absent = ("x_test", "y_test") if "x_test" in names else ("y_test", "x_test")
            raise DatasetError(
                field, f"{path}: has {present} without {absent}; give both or neither"
            )
        wanted = [n for n in ("x_train", "y_train", "x_test", "y_test") if n in names]
        data = {}
        for name in wanted:
            try:
                data[name] = archive[name]
            except ValueError as exc:  # object arrays need pickle, which we never allow
                raise DatasetError(
                    field, f"{path}: {name} cannot be read without pickle ({exc})"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise DatasetError(field, f"{path}: {name} is corrupt ({exc})") from None
    return data


def _images(x: np.ndarray, name: str, fail: Fail) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise fail(f"{name} has dtype {x.dtype}; images must be numeric")
    if x.size == 0:
        raise fail(f"{name} is empty (shape {x.shape})")
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W) grayscale
    elif x.ndim != 4:
        raise fail(f"{name} has rank {x.ndim}, expected (N, H, W) or (N, H, W, C)")
    if x.shape[-1] not in (1, 3, 4):
        raise fail(f"{name} has {x.shape[-1]} channels (shape {x.shape}); expected 1, 3 or 4")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise fail(f"{name} contains NaN or infinite values")
    return x


def _labels(y: np.ndarray, name: str, fail: Fail) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise fail(f"{name} has shape {y.shape}; expected (N,) or (N, 1) integer class labels")
    if y.size == 0:
        raise fail(f"{name} is empty")
    if np.issubdtype(y.dtype, np.floating):
        bad = y[~np.isfinite(y) | (y != np.round(y))]
        if bad.size:
            raise fail(
                f"{name} has non-integer labels (e.g. {bad[0]}); labels must be class numbers"
            )
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise fail(f"{name} has dtype {y.dtype}; labels must be integers")
    if y.dtype.kind == "u" and y.max() > np.iinfo(np.int64).max:
        raise fail(f"{name} has labels larger than {np.iinfo(np.int64).max} (e.g. {y.max()})")
    if (y < 0).any():
        raise fail(f"{name} has negative labels (e.g. {y[y < 0][0]}); labels must be 0 or greater")
    return y.astype(np.int64)

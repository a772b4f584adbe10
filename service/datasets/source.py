"""What every dataset kind hands to the shared split/scale code: `Source`, plus small helpers.

A kind reads its data once into a `Source`; `inspect` asks for labels only (no pixels when that
saves work), `load` asks for arrays too. Keeping the split out of the kinds means every kind
splits, checks and scales the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from service.datasets.options import DataOptions
from service.errors import DatasetError

_CHUNK = 1 << 20


@dataclass
class Source:
    """Raw data of one dataset, before splitting and scaling."""

    fingerprint: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    n_train: int
    y_train: np.ndarray | None
    """int64 labels 0..K-1; None only when they cannot be known without downloading."""
    n_test: int | None = None
    """Size of the source's own test set; None when the source has none (test_split applies)."""
    x_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def local_path(path: str, field: str, options: DataOptions, folder: bool = False) -> Path:
    """Where a dataset lives on this machine; s3:// URIs are downloaded once and cached."""
    if path.startswith("s3://"):
        from service.datasets.remote import fetch

        return fetch(path, field, folder, options)
    try:
        local = Path(path).expanduser()
    except RuntimeError:  # `~someone/...` for a user this machine does not know
        raise DatasetError(field, f"{path}: unknown user in '~'") from None
    check_roots(local, path, field, data_roots(options.data_roots))
    return as_seen_from_here(local)


def as_seen_from_here(local: Path) -> Path:
    """`local`, relative to the working directory when it lies inside it. A spec file's relative
    paths reach here resolved to absolute ones (`service.spec.paths`); reading them through the
    shorter form opens the same file, and every message then names the file, and the files of
    an image folder, as the user types them from here (`images/dog/1.png`, not /home/...)."""
    if not local.is_absolute():
        return local
    try:
        return local.relative_to(Path.cwd())
    except (ValueError, OSError):  # outside it, or the working directory is gone
        return local


def data_roots(roots: str | None) -> list[Path] | None:
    """The folders of ABLATE_DATA_ROOTS (`DataOptions.data_roots`), resolved; None when unset
    (anywhere is allowed)."""
    import os

    if not roots:
        return None
    return [Path(root).expanduser().resolve() for root in roots.split(os.pathsep) if root]


def check_roots(local: Path, path: str, field: str, allowed: list[Path] | None) -> None:
    """With ABLATE_DATA_ROOTS set (`allowed`, from `data_roots`), a file or folder (after `..`
    and every symlink on the way) must lie inside a root. Every file read is checked, not only
    the path the spec names: a symlink inside an allowed folder may lead anywhere."""
    if not allowed:
        return
    resolved = local.resolve()
    if not any(resolved == root or root in resolved.parents for root in allowed):
        listed = ", ".join(str(root) for root in allowed)
        raise DatasetError(field, f"{path}: outside the allowed data folders ({listed}; ABLATE_DATA_ROOTS)")


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return sha256_handle(handle)


def sha256_handle(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()

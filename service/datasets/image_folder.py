"""Datasets stored as a folder of images, one sub-folder per class (sorted names = class order).

Each file is read once: its bytes feed the fingerprint and then Pillow, which either only
verifies it (`inspect`) or decodes, converts and resizes it (`load`). Names starting with "." are
ignored; anything else that is not an image is an error rather than silently skipped, so a
misplaced file cannot quietly change the data.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from service.datasets.source import Source, local_path
from service.errors import DatasetError
from service.spec.datasets import ImageFolderDataset


def read(spec: ImageFolderDataset, field: str, arrays: bool) -> Source:
    field = f"{field}.path"
    root = local_path(spec.path, field, folder=True)
    classes = _scan(root, field)
    channels = 1 if spec.color_mode == "grayscale" else 3
    mode = "L" if channels == 1 else "RGB"
    size = spec.image_size
    files = [(label, path) for label, (_, paths) in enumerate(classes) for path in paths]
    x = np.empty((len(files), size, size, channels), dtype=np.uint8) if arrays else None
    entries: list[str] = []
    for index, (_, path) in enumerate(files):
        data = path.read_bytes()
        relative = path.relative_to(root).as_posix()
        entries.append(f"{relative}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if x is None:
                    image.verify()
                else:
                    image = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                    x[index] = np.asarray(image, dtype=np.uint8).reshape(size, size, channels)
        except Exception:  # Pillow raises many types (UnidentifiedImageError, SyntaxError, OSError)
            raise DatasetError(field, f"{path} is not an image Pillow can read") from None
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode("utf-8"))
    return Source(
        fingerprint=digest.hexdigest(),
        input_shape=(size, size, channels),
        class_names=[name for name, _ in classes],
        n_train=len(files),
        y_train=np.array([label for label, _ in files], dtype=np.int64),
        x_train=x,
    )


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _scan(root: Path, field: str) -> list[tuple[str, list[Path]]]:
    """(class name, image files) per class folder, sorted; raises for any misplaced entry."""
    if not root.exists():
        raise DatasetError(field, f"{root}: folder not found")
    if not root.is_dir():
        raise DatasetError(field, f"{root} is not a directory (expected one sub-folder per class)")
    entries = _visible(root)
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DatasetError(
            field,
            f"{stray[0]} is a file at the top level of {root}; put every image in its class's "
            "sub-folder",
        )
    if len(entries) < 2:
        raise DatasetError(
            field, f"{root} has {len(entries)} class folder(s); a classifier needs at least 2"
        )
    classes = []
    for folder in entries:
        files = _visible(folder)
        nested = [p for p in files if p.is_dir()]
        if nested:
            raise DatasetError(
                field,
                f"{nested[0]} is a folder inside class '{folder.name}'; class folders hold only images",
            )
        if not files:
            raise DatasetError(field, f"class '{folder.name}' ({folder}) has no images")
        classes.append((folder.name, files))
    return classes

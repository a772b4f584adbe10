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

from service.datasets.options import DataOptions
from service.datasets.source import Source, check_roots, data_roots, local_path
from service.errors import DatasetError
from service.files import NotARegularFile, read_regular
from service.spec.datasets import ImageFolderDataset

MAX_IMAGE_PIXELS = 40_000_000
"""Pixels of one image at most (a 6000x6000 photo); Pillow's own limit is twice its warning."""
MAX_IMAGE_BYTES = 256 * 1024 * 1024


def read(spec: ImageFolderDataset, field: str, arrays: bool, options: DataOptions) -> Source:
    field = f"{field}.path"
    root = local_path(spec.path, field, options, folder=True)
    classes = _scan(root, field, data_roots(options.data_roots))
    channels = 1 if spec.color_mode == "grayscale" else 3
    mode = "L" if channels == 1 else "RGB"
    size = spec.image_size
    files = [(label, path) for label, (_, paths) in enumerate(classes) for path in paths]
    _check_size(root, files, size * size * channels, field, options.max_dataset_bytes)
    x = np.empty((len(files), size, size, channels), dtype=np.uint8) if arrays else None
    entries: list[str] = []
    for index, (_, path) in enumerate(files):
        try:
            data = read_regular(path, MAX_IMAGE_BYTES)
        except NotARegularFile as exc:
            raise DatasetError(field, f"{path}: {exc}") from None
        relative = path.relative_to(root).as_posix()
        entries.append(f"{relative}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n")
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size  # from the header: nothing is decoded yet
                if width * height > MAX_IMAGE_PIXELS:
                    raise DatasetError(
                        field,
                        f"{path} is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} "
                        "an image may have (resize it first)",
                    )
                if x is None:
                    image.verify()
                else:
                    image = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                    x[index] = np.asarray(image, dtype=np.uint8).reshape(size, size, channels)
        except DatasetError:
            raise
        except Image.DecompressionBombError:
            raise DatasetError(
                field, f"{path} declares more pixels than Pillow decodes (a decompression bomb)"
            ) from None
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


def _check_size(root: Path, files: list[tuple[int, Path]], pixels: int, field: str, limit: int) -> None:
    """The files and the decoded images against ABLATE_MAX_DATASET_BYTES (`limit`), before any
    is read."""
    decoded = len(files) * pixels
    stored = 0
    for _, path in files:
        stored += path.stat().st_size
    if max(stored, decoded) > limit:
        raise DatasetError(
            field,
            f"{root}: {len(files)} images of {stored} bytes ({decoded} bytes decoded) are more "
            f"than the {limit} allowed (ABLATE_MAX_DATASET_BYTES)",
        )


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _scan(root: Path, field: str, roots: list[Path] | None) -> list[tuple[str, list[Path]]]:
    """(class name, image files) per class folder, sorted; raises for any misplaced entry or
    any file outside `roots` (ABLATE_DATA_ROOTS, resolved)."""
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
        for path in files:
            # Each file after resolving links: one linked from outside the roots is not read.
            check_roots(path, str(path), field, roots)
            if not path.is_file():
                raise DatasetError(field, f"{path} is not a regular file (a FIFO, device or broken link)")
        if not files:
            raise DatasetError(field, f"class '{folder.name}' ({folder}) has no images")
        classes.append((folder.name, files))
    return classes

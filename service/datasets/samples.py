"""A training sample's identity in the user's own dataset, for lists a user acts on (the
samples most likely mislabelled): the file of an image folder, else the index into the data as
the user holds it (the npz's `x_train`, scikit-learn's digits, a keras.datasets array).

Indices are into the source's training data before any split is drawn
(`SplitArrays.train_index`), so `x_train[i]` is the row the user would open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.spec.datasets import DatasetSpec

INDEXED_AS = {
    "digits": "digits[{index}]",
    "npz": "x_train[{index}]",
    "synthetic": "sample {index}",
}
"""How a sample is named per dataset kind; keras.datasets' classics are their x_train."""


def sample_names(spec: DatasetSpec, indices: Sequence[int]) -> list[str]:
    """One name per index: `cats/017.png` for an image folder on this machine (its path inside
    the folder), `x_train[17]` for an npz or keras.datasets array, `digits[17]` for digits."""
    if spec.kind == "image_folder":
        files = _image_files(spec.path)
        if files is not None:
            return [files[int(index)] for index in indices]
        return [f"image {int(index)} of {spec.path}" for index in indices]
    pattern = INDEXED_AS.get(spec.kind, "x_train[{index}]")
    return [pattern.format(index=int(index)) for index in indices]


def _image_files(path: str) -> list[str] | None:
    """The folder's images in the order the dataset layer reads them (class folders sorted,
    files sorted within each, names starting with "." left out), relative to the folder; None
    for a folder not on this machine (s3://: its files are named by position). Only names are
    listed: the folder was read, and checked, when the run loaded it."""
    if path.startswith("s3://"):
        return None
    root = Path(path).expanduser()
    if not root.is_dir():
        return None
    return [
        f"{folder.name}/{image.name}"
        for folder in _visible(root)
        if folder.is_dir()
        for image in _visible(folder)
    ]


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))

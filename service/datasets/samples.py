"""A training sample's identity in the user's own dataset, for lists a user acts on (the
samples most likely mislabelled): the file of an image folder, else the index into the data as
the user holds it (the npz's `x_train`, scikit-learn's digits, a keras.datasets array).

Indices are into the source's training data before any split is drawn
(`SplitArrays.train_index`), so `x_train[i]` is the row the user would open.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.spec.datasets import DatasetSpec

INDEXED_AS = {
    "digits": "digits[{index}]",
    "npz": "x_train[{index}]",
    "synthetic": "sample {index}",
}
"""How a sample is named per dataset kind; keras.datasets' classics are their x_train."""


def sample_names(spec: DatasetSpec, indices: Sequence[int], field: str = "dataset") -> list[str]:
    """One name per index: `cats/017.png` for an image folder (its path inside the folder),
    `x_train[17]` for an npz or keras.datasets array, `digits[17]` for digits."""
    if spec.kind == "image_folder":
        files = _image_files(spec, field)
        return [files[int(index)] for index in indices]
    pattern = INDEXED_AS.get(spec.kind, "x_train[{index}]")
    return [pattern.format(index=int(index)) for index in indices]


def _image_files(spec: DatasetSpec, field: str) -> list[str]:
    """The folder's images in the order the dataset layer reads them (class folders sorted,
    files sorted within each), as paths relative to the folder."""
    from service.datasets.image_folder import _scan
    from service.datasets.source import local_path

    root = local_path(spec.path, f"{field}.path", folder=True)
    classes = _scan(root, f"{field}.path")
    return [path.relative_to(root).as_posix() for _, paths in classes for path in paths]

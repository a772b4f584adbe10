"""Dataset sections of a study spec: one pydantic model per dataset kind.

Every kind shares the split and scaling options, so all runs of a study see the same
train/validation/test split (it depends on `split_seed`, never on the run's seed).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from service.spec.base import DataPath, StrictModel

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class _DatasetBase(StrictModel):
    validation_split: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """Fraction of the training data held out for validation (0 disables validation)."""
    test_split: Fraction = 0.2
    """Fraction held out for the test split when the source has no test set of its own."""
    split_seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """Seed of the split; the same for every run so variants are compared on the same data."""
    scale: Literal["auto", "none", "unit", "standardize"] = "auto"
    """auto: divide by the training maximum when it exceeds 1; unit: divide by 255;
    standardize: zero mean, unit variance per channel (training statistics); none: as stored."""


class DigitsDataset(_DatasetBase):
    """scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes, ships offline."""

    kind: Literal["digits"]


class SyntheticDataset(_DatasetBase):
    """Generated shapes (circle, square, triangle, cross, ...), deterministic per `seed`."""

    kind: Literal["synthetic"]
    image_size: Annotated[int, Field(ge=8, le=256)] = 28
    channels: Literal[1, 3] = 1
    classes: Annotated[int, Field(ge=2, le=8)] = 4
    samples_per_class: Annotated[int, Field(ge=4, le=100_000)] = 200
    noise: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    imbalance: Annotated[float, Field(ge=1.0, le=100.0)] = 1.0
    """Ratio of the largest to the smallest class (1 = balanced)."""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0


class KerasDataset(_DatasetBase):
    """A keras.datasets classic: downloaded on first use, then cached under ~/.keras."""

    kind: Literal["mnist", "fashion_mnist", "cifar10", "cifar100"]


class NpzDataset(_DatasetBase):
    """An .npz file with x_train/y_train and optionally x_test/y_test (local path or s3:// URI)."""

    kind: Literal["npz"]
    path: DataPath


class ImageFolderDataset(_DatasetBase):
    """A folder with one sub-folder of images per class (local path or s3:// URI)."""

    kind: Literal["image_folder"]
    path: DataPath
    image_size: Annotated[int, Field(ge=8, le=512)] = 64
    color_mode: Literal["grayscale", "rgb"] = "rgb"


DatasetSpec = Annotated[
    DigitsDataset | SyntheticDataset | KerasDataset | NpzDataset | ImageFolderDataset,
    Field(discriminator="kind"),
]

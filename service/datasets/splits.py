"""Train/validation/test splits and scaling, shared by every dataset kind.

Splits depend on `split_seed` only (never on a run's seed), so every run of a study trains and
is scored on the same samples. Held-out sizes are computed here and handed to scikit-learn as
integers, so `inspect` (sizes only) and `load` (real indices) always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from service.errors import DatasetError


@dataclass
class SplitIndices:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray | None
    """Indices into the source's training data; None when the source has its own test set."""


def held_out(n: int, fraction: float, field: str, what: str) -> int:
    """How many of `n` samples `fraction` holds out; at least 1 must stay on each side."""
    # The epsilon keeps 0.1 * 30 at 3 rather than ceil(3.0000000000000004) = 4.
    n_held = math.ceil(fraction * n - 1e-9)
    if n_held < 1 or n - n_held < 1:
        raise DatasetError(
            field,
            f"{what}={fraction} of {n} samples leaves {n - n_held} for training and {n_held} "
            f"for {what.removesuffix('_split')}; each needs at least 1 sample",
        )
    return n_held


def split_sizes(
    n_train: int, has_test: bool, validation_split: float, test_split: float, field: str
) -> tuple[int, int, int | None]:
    """(train, validation, test) sizes when the labels are not known (keras.datasets in inspect)."""
    n_test = None
    if not has_test:
        n_test = held_out(n_train, test_split, f"{field}.test_split", "test_split")
        n_train -= n_test
    n_val = 0
    if validation_split > 0:
        n_val = held_out(n_train, validation_split, f"{field}.validation_split", "validation_split")
    return n_train - n_val, n_val, n_test


def split_indices(
    y: np.ndarray,
    has_test: bool,
    validation_split: float,
    test_split: float,
    split_seed: int,
    field: str,
) -> SplitIndices:
    """Test split first (only when the source has no test set), then validation from the rest."""
    train = np.arange(len(y))
    test = None
    last_field = f"{field}.test_split"
    if not has_test:
        train, test = _split(train, y, test_split, split_seed, last_field, "test_split")
    validation = np.empty(0, dtype=np.int64)
    if validation_split > 0:
        last_field = f"{field}.validation_split"
        train, validation = _split(
            train, y, validation_split, split_seed, last_field, "validation_split"
        )
    classes = np.unique(y[train])
    if len(classes) < 2:
        raise DatasetError(
            last_field,
            f"after splitting, the training set holds a single class ({classes[0]}); "
            "a classifier needs at least 2 (lower the split fractions or add data)",
        )
    return SplitIndices(train=train, validation=validation, test=test)


def _split(
    indices: np.ndarray, y: np.ndarray, fraction: float, seed: int, field: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    n_held = held_out(len(indices), fraction, field, what)
    labels = y[indices]
    _, counts = np.unique(labels, return_counts=True)
    # Stratify only when scikit-learn can: every class twice, and room for each class per side.
    stratify = (
        labels
        if counts.min() >= 2 and n_held >= len(counts) and len(indices) - n_held >= len(counts)
        else None
    )
    keep, held = train_test_split(indices, test_size=n_held, random_state=seed, stratify=stratify)
    return np.asarray(keep, dtype=np.int64), np.asarray(held, dtype=np.int64)


def check_folds(folds: int, train_size: int, field: str) -> None:
    """A DatasetError naming `field` when `folds` folds of `train_size` samples leave one empty."""
    if folds > train_size:
        raise DatasetError(
            field, f"{folds} folds of a training split of {train_size} samples leave a fold empty"
        )


def fold_of(y_train: np.ndarray, folds: int, split_seed: int, field: str) -> np.ndarray:
    """The fold (0 .. folds - 1) of each sample of the training split: stratified (each class's
    samples dealt round-robin to the folds, in an order drawn by `split_seed`) and balanced
    (fold sizes differ by at most one). The run's seed plays no part, so the `folds` runs of one
    config hold out disjoint folds that together cover the split."""
    y = np.asarray(y_train, dtype=np.int64)
    check_folds(folds, len(y), field)
    rng = np.random.default_rng(split_seed)
    # Every class's samples in a random order, classes one after another: dealing this sequence
    # round-robin spreads each class evenly over the folds and keeps their sizes within one.
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(y == label)) for label in np.unique(y)]
    )
    assignment = np.empty(len(y), dtype=np.int64)
    assignment[order] = np.arange(len(y)) % folds
    return assignment


def scale(
    x_train: np.ndarray, others: list[np.ndarray], mode: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Scale every split with statistics of the training split only; returns float32 arrays."""
    train = x_train.astype(np.float32)
    rest = [x.astype(np.float32) for x in others]
    if mode == "none":
        return train, rest
    offset: float | np.ndarray = 0.0
    if mode == "standardize":
        axes = tuple(range(train.ndim - 1))  # per channel: over samples, rows and columns
        offset = train.mean(axis=axes, dtype=np.float64).astype(np.float32)
        divisor = np.maximum(train.std(axis=axes, dtype=np.float64), 1e-7).astype(np.float32)
    elif mode == "unit":
        divisor = 255.0
    else:  # auto: only data stored as counts (0..16, 0..255) is divided
        peak = float(train.max()) if train.size else 0.0
        divisor = peak if peak > 1.0 else 1.0
    for array in [train, *rest]:
        array -= offset
        array /= divisor
    return train, rest

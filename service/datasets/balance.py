"""What the training options change about the training split: class weights, oversampling, and
the stratified share of the split a learning curve trains on.

Pure numpy, so the client checks a spec's class weights against the dataset's classes when it
plans (`check_class_weight`), and the worker computes the same weights and samples when it
trains (`class_weights`, `oversampled`, `train_subset`). The validation and test splits are
never touched: every variant is still scored on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.errors import DatasetError

FIELD = "training.class_weight"


def check_class_weight(
    value: str | dict[str, float] | None, class_names: Sequence[str], field: str = FIELD
) -> None:
    """Raise `DatasetError` naming `field.<key>` for a class the dataset does not have."""
    if isinstance(value, dict):
        for key in value:
            _class_index(key, class_names, field)


def class_weights(
    value: str | dict[str, float] | None,
    class_names: Sequence[str],
    y_train: np.ndarray,
    field: str = FIELD,
) -> dict[int, float] | None:
    """Keras' `class_weight` for `fit`: None (every class 1), "balanced" (scikit-learn's rule,
    n / (K x count) over the classes the training split holds) or the spec's mapping with
    unlisted classes at 1."""
    if value is None:
        return None
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(class_names))
    if value == "balanced":
        present = counts > 0
        total, classes = int(counts.sum()), int(present.sum())
        # A class absent from the training split cannot be weighted (and is never a target).
        return {
            index: (total / (classes * int(count)) if count else 1.0)
            for index, count in enumerate(counts)
        }
    weights = dict.fromkeys(range(len(class_names)), 1.0)
    for key, weight in value.items():
        weights[_class_index(key, class_names, field)] = float(weight)
    return weights


def _class_index(key: str, class_names: Sequence[str], field: str) -> int:
    """A key names a class first, else it is its index: digits' classes are named "0".."9", so
    both readings agree there, and a name that is also a number is never misread."""
    names = [str(name) for name in class_names]
    if key in names:
        return names.index(key)
    if key.isdigit() and int(key) < len(names):
        return int(key)
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise DatasetError(
        f"{field}.{key}",
        f"the dataset has no class {key!r} (its {len(names)} classes, by index 0..{len(names) - 1}"
        f" or name: {shown})",
    )


def train_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of the training split, at least one sample of
    each class. Nested: with the same seed, the 25% subset lies inside the 50% one, so the
    points of a learning curve differ only by the data added."""
    y = np.asarray(y)
    if fraction >= 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        order = members[rng.permutation(len(members))]
        kept.append(order[: max(1, math.ceil(fraction * len(members) - 1e-9))])
    return np.sort(np.concatenate(kept))


def oversampled(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices into `y` in which every class appears as often as the largest: each smaller
    class's samples repeat whole, the remainder drawn without replacement (random
    oversampling, as imbalanced-learn's RandomOverSampler does)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    labels, counts = np.unique(y, return_counts=True)
    target = int(counts.max())
    picked = []
    for label, count in zip(labels, counts, strict=True):
        members = np.flatnonzero(y == label)
        whole, rest = divmod(target, int(count))
        picked.append(np.tile(members, whole))
        picked.append(rng.choice(members, size=rest, replace=False))
    return np.concatenate(picked)

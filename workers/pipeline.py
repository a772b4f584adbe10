"""tf.data input pipelines from in-memory arrays: cache, shuffle, batch, prefetch.

The training pipeline also applies the options that change what an epoch draws from the
training split (`training.train_fraction`, `training.resample`): an epoch still holds as many
samples as the whole split, so the runner's steps per epoch, its schedules and XLA's batch
shapes are the same with or without them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from service.datasets.balance import class_weights, oversampled, train_subset

__all__ = ["class_weights", "eval_dataset", "training_dataset"]


def training_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    num_classes: int,
    one_hot: bool,
    drop_remainder: bool = False,
    fraction: float = 1.0,
    resample: str = "none",
    subset_seed: int = 0,
) -> tf.data.Dataset:
    """Batches of the training split. `fraction` < 1 trains on a stratified, nested share of it
    (chosen by `subset_seed`, the split's seed, so every run of a learning curve point sees the
    same samples); `resample="oversample"` draws every class equally often (by the run's seed)."""
    labels = _labels(y, num_classes, one_hot)
    if fraction >= 1.0 and resample == "none":
        # Shuffle after cache so each epoch sees a new order; seeded so a run is reproducible.
        data = tf.data.Dataset.from_tensor_slices((x, labels)).cache()
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    else:
        pool = train_subset(y, fraction, subset_seed)
        if resample == "oversample":
            pool = pool[oversampled(y[pool], seed)]
        elif resample != "none":
            raise ValueError(f"training.resample: unknown option {resample!r}")
        data = tf.data.Dataset.from_tensor_slices((x[pool], labels[pool])).cache()
        # Each pass over the pool is reshuffled; an epoch takes as many samples as the split.
        data = data.shuffle(len(pool), seed=seed, reshuffle_each_iteration=True)
        data = data.repeat().take(len(x))
    # drop_remainder: every batch of one shape (XLA compiles once per shape).
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, num_classes: int, one_hot: bool
) -> tf.data.Dataset | None:
    if len(x) == 0:
        return None
    data = tf.data.Dataset.from_tensor_slices((x, _labels(y, num_classes, one_hot))).cache()
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _labels(y: np.ndarray, num_classes: int, one_hot: bool) -> np.ndarray:
    # Label smoothing needs one-hot targets (CategoricalCrossentropy); otherwise keep sparse ints.
    if one_hot:
        return np.eye(num_classes, dtype=np.float32)[y]
    return y.astype(np.int64)

"""tf.data input pipelines from in-memory arrays: cache, shuffle, batch, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def training_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    num_classes: int,
    one_hot: bool,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    # Shuffle after cache so each epoch sees a new order; seeded so a run is reproducible.
    data = tf.data.Dataset.from_tensor_slices((x, _labels(y, num_classes, one_hot))).cache()
    data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
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

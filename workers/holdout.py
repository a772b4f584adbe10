"""An out-of-fold run (`training.holdout`): hold one fold of the training split out of training,
and store the trained model's predictions for it.

The runner composes the two steps: `hold_out` before the pipelines are built (the run trains on
the other folds), `store_held_out` after the test evaluation and before metrics.json (so a
succeeded run always has its `held_out.json`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np

from service.datasets import SplitArrays
from service.datasets.samples import sample_names
from service.datasets.splits import fold_of
from service.holdout import HeldOutPredictions, write_held_out
from service.spec.models import TrainConfig
from service.store.base import Store

DIGITS = 6
"""Decimals kept of each probability: far below what ranking samples needs, and half the JSON."""


@dataclass
class HeldOut:
    """The held-out fold: its images (scaled like the rest), given labels and source indices."""

    x: np.ndarray
    y: np.ndarray
    samples: np.ndarray


def hold_out(data: SplitArrays, config: TrainConfig) -> tuple[SplitArrays, HeldOut | None]:
    """(`data` without the held-out fold in its training split, the fold); `data` unchanged and
    None when the run holds nothing out."""
    holdout = config.training.holdout
    if holdout is None:
        return data, None
    folds = fold_of(
        data.y_train, holdout.folds, config.dataset.split_seed, "training.holdout.folds"
    )
    held = folds == holdout.fold
    index = data.train_index if data.train_index is not None else np.arange(len(data.y_train))
    kept = dataclasses.replace(
        data, x_train=data.x_train[~held], y_train=data.y_train[~held], train_index=index[~held]
    )
    return kept, HeldOut(x=data.x_train[held], y=data.y_train[held], samples=index[held])


def store_held_out(
    store: Store,
    run_id: str,
    config: TrainConfig,
    model: keras.Model,
    held: HeldOut,
    class_names: list[str],
) -> None:
    """Predict the held-out fold with the trained model and write `held_out.json`."""
    holdout = config.training.holdout
    step = 4 * config.training.batch_size  # inference only: larger batches than training fit
    probabilities = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(held.x[i : i + step], training=False))
            for i in range(0, len(held.x), step)
        ]
    ).astype(np.float64)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    document = HeldOutPredictions(
        run_id=run_id,
        folds=holdout.folds,
        fold=holdout.fold,
        class_names=list(class_names),
        samples=held.samples.tolist(),
        names=sample_names(config.dataset, held.samples.tolist()),
        labels=held.y.astype(np.int64).tolist(),
        probabilities=np.round(probabilities, DIGITS).tolist(),
    )
    write_held_out(store, document)

"""The optimizer, learning-rate schedule and loss of a run.

Schedules that depend only on the step become `keras.optimizers.schedules` objects the optimizer
evaluates at its own iteration count; `constant` and `reduce_on_plateau` keep a plain float rate,
which the runner's plateau callback lowers with `set_learning_rate`.
"""

from __future__ import annotations

import keras
import numpy as np

from service.spec.models import TrainConfig

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


def build_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of `config.optimizer`, driven by the learning rate of `config.schedule`."""
    spec = config.optimizer
    common = {"learning_rate": learning_rate_for(config, steps_per_epoch)}
    if spec.clipnorm is not None:
        common["clipnorm"] = spec.clipnorm
    if spec.name == "adam":
        return keras.optimizers.Adam(beta_1=spec.beta_1, beta_2=spec.beta_2, **common)
    if spec.name == "adamw":
        return keras.optimizers.AdamW(
            weight_decay=spec.weight_decay, beta_1=spec.beta_1, beta_2=spec.beta_2, **common
        )
    if spec.name == "sgd":
        return keras.optimizers.SGD(momentum=spec.momentum, nesterov=spec.nesterov, **common)
    if spec.name == "rmsprop":
        return keras.optimizers.RMSprop(rho=spec.rho, momentum=spec.momentum, **common)
    raise ValueError(f"unknown optimizer {spec.name!r}")


def learning_rate_for(config: TrainConfig, steps_per_epoch: int) -> LearningRate:
    """`optimizer.learning_rate` as a float, or as a schedule of the optimizer step.

    `piecewise` takes its rates from `schedule.values` and ignores `optimizer.learning_rate`.
    """
    rate = config.optimizer.learning_rate
    schedule = config.schedule
    schedules = keras.optimizers.schedules
    if schedule.name in ("constant", "reduce_on_plateau"):
        return rate
    if schedule.name == "exponential_decay":
        return schedules.ExponentialDecay(
            rate, schedule.decay_steps, schedule.decay_rate, staircase=schedule.staircase
        )
    if schedule.name == "cosine":
        total_steps = config.training.epochs * max(steps_per_epoch, 1)
        decay_steps = schedule.decay_steps or max(total_steps - schedule.warmup_steps, 1)
        if schedule.warmup_steps == 0:
            return schedules.CosineDecay(rate, decay_steps, alpha=schedule.alpha)
        # 1) linear warm-up from 0 to the configured rate, 2) cosine decay to alpha * rate
        return schedules.CosineDecay(
            0.0,
            decay_steps,
            alpha=schedule.alpha,
            warmup_target=rate,
            warmup_steps=schedule.warmup_steps,
        )
    if schedule.name == "piecewise":
        return schedules.PiecewiseConstantDecay(list(schedule.boundaries), list(schedule.values))
    raise ValueError(f"unknown schedule {schedule.name!r}")


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate in effect at the optimizer's current iteration (schedules are evaluated there)."""
    return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))


def set_learning_rate(optimizer: keras.optimizers.Optimizer, value: float) -> None:
    """Set a float learning rate (reduce_on_plateau); a schedule owns its rate, so that raises."""
    try:
        optimizer.learning_rate = float(value)
    except TypeError as error:
        raise TypeError(
            "the optimizer's learning rate is a schedule and cannot be set; "
            "only 'constant' and 'reduce_on_plateau' schedules allow it"
        ) from error


def loss_for(config: TrainConfig) -> keras.losses.Loss:
    """Cross-entropy on the softmax output, with the configured label smoothing.

    Keras 3's SparseCategoricalCrossentropy has no `label_smoothing`, so with smoothing the
    loss is CategoricalCrossentropy and the runner must one-hot encode the labels.
    """
    smoothing = config.training.label_smoothing
    if smoothing == 0:
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

"""workers.optim: optimizers, learning-rate schedules and the loss."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from service.spec.models import TrainConfig
from workers.optim import (
    build_optimizer,
    current_learning_rate,
    learning_rate_for,
    loss_for,
    set_learning_rate,
)


def make_config(**sections) -> TrainConfig:
    return TrainConfig.model_validate(sections)


def rate_at(optimizer: keras.optimizers.Optimizer, step: int) -> float:
    optimizer.iterations.assign(step)
    return current_learning_rate(optimizer)


def sgd_with(schedule: dict, learning_rate: float = 0.1, **training) -> TrainConfig:
    return make_config(
        optimizer={"name": "sgd", "learning_rate": learning_rate},
        schedule=schedule,
        training=training or {"epochs": 10},
    )


# Schedules


def test_exponential_decay_halves_every_decay_steps():
    config = sgd_with({"name": "exponential_decay", "decay_steps": 10, "decay_rate": 0.5})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert rate_at(optimizer, 0) == pytest.approx(0.1)
    assert rate_at(optimizer, 5) == pytest.approx(0.1 * 0.5**0.5)
    assert rate_at(optimizer, 10) == pytest.approx(0.05)
    assert rate_at(optimizer, 20) == pytest.approx(0.025)


def test_exponential_decay_staircase_steps_down_at_whole_periods():
    config = sgd_with(
        {"name": "exponential_decay", "decay_steps": 10, "decay_rate": 0.5, "staircase": True}
    )
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert rate_at(optimizer, 9) == pytest.approx(0.1)
    assert rate_at(optimizer, 10) == pytest.approx(0.05)
    assert rate_at(optimizer, 19) == pytest.approx(0.05)


def test_cosine_warms_up_from_zero_then_decays_to_alpha():
    config = sgd_with(
        {"name": "cosine", "decay_steps": 100, "alpha": 0.1, "warmup_steps": 10},
        learning_rate=0.01,
    )
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert rate_at(optimizer, 0) == pytest.approx(0.0, abs=1e-9)
    assert rate_at(optimizer, 5) == pytest.approx(0.005)
    assert rate_at(optimizer, 10) == pytest.approx(0.01)
    # halfway through the decay: cos term 0.5, so (1 - alpha) * 0.5 + alpha
    assert rate_at(optimizer, 60) == pytest.approx(0.01 * (0.9 * 0.5 + 0.1))
    assert rate_at(optimizer, 110) == pytest.approx(0.001)
    assert rate_at(optimizer, 1000) == pytest.approx(0.001)


def test_cosine_without_warmup_starts_at_the_learning_rate():
    config = sgd_with({"name": "cosine", "decay_steps": 50}, learning_rate=0.2)
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert rate_at(optimizer, 0) == pytest.approx(0.2)
    assert rate_at(optimizer, 25) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert rate_at(optimizer, 50) == pytest.approx(0.0, abs=1e-9)


def test_cosine_decays_over_the_rest_of_the_run_by_default():
    config = sgd_with({"name": "cosine", "warmup_steps": 10}, epochs=5)
    assert learning_rate_for(config, steps_per_epoch=20).decay_steps == 5 * 20 - 10
    # a warm-up longer than the run still leaves a valid (one-step) decay
    short = sgd_with({"name": "cosine", "warmup_steps": 10}, epochs=1)
    assert learning_rate_for(short, steps_per_epoch=5).decay_steps == 1


def test_piecewise_holds_each_value_up_to_and_including_its_boundary():
    config = sgd_with({"name": "piecewise", "boundaries": [10, 20], "values": [0.1, 0.01, 0.001]})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    expected = {0: 0.1, 10: 0.1, 11: 0.01, 20: 0.01, 21: 0.001, 100: 0.001}
    assert {step: rate_at(optimizer, step) for step in expected} == pytest.approx(expected)


@pytest.mark.parametrize("schedule", [{"name": "constant"}, {"name": "reduce_on_plateau"}])
def test_constant_and_plateau_use_a_plain_float(schedule):
    config = sgd_with(schedule, learning_rate=0.05)
    assert learning_rate_for(config, steps_per_epoch=5) == 0.05
    assert current_learning_rate(build_optimizer(config, steps_per_epoch=5)) == pytest.approx(0.05)


def test_current_learning_rate_follows_the_optimizer_steps():
    config = sgd_with({"name": "exponential_decay", "decay_steps": 1, "decay_rate": 0.5})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer.build([variable])
    for _ in range(2):
        optimizer.apply_gradients([(keras.ops.zeros(3), variable)])
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2
    assert current_learning_rate(optimizer) == pytest.approx(0.1 * 0.5**2)


def test_set_learning_rate_changes_a_constant_rate():
    optimizer = build_optimizer(sgd_with({"name": "reduce_on_plateau"}), steps_per_epoch=5)
    set_learning_rate(optimizer, 0.025)
    assert current_learning_rate(optimizer) == pytest.approx(0.025)


def test_set_learning_rate_refuses_a_schedule():
    config = sgd_with({"name": "exponential_decay"})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    with pytest.raises(TypeError, match="schedule"):
        set_learning_rate(optimizer, 0.01)


# Optimizers


def test_sgd_carries_momentum_nesterov_and_clipnorm():
    config = make_config(
        optimizer={"name": "sgd", "momentum": 0.9, "nesterov": True, "clipnorm": 1.5}
    )
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == pytest.approx(0.9)
    assert optimizer.nesterov is True
    assert optimizer.clipnorm == pytest.approx(1.5)


def test_clipnorm_is_off_unless_set():
    optimizer = build_optimizer(make_config(), steps_per_epoch=5)
    assert optimizer.clipnorm is None


def test_adam_carries_its_betas():
    config = make_config(optimizer={"name": "adam", "beta_1": 0.8, "beta_2": 0.99})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert (optimizer.beta_1, optimizer.beta_2) == pytest.approx((0.8, 0.99))


def test_adamw_carries_weight_decay():
    config = make_config(optimizer={"name": "adamw", "weight_decay": 0.01})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.01)


def test_rmsprop_carries_rho_and_momentum():
    config = make_config(optimizer={"name": "rmsprop", "rho": 0.8, "momentum": 0.5})
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert (optimizer.rho, optimizer.momentum) == pytest.approx((0.8, 0.5))


# Loss


def test_loss_is_sparse_without_label_smoothing():
    loss = loss_for(make_config())
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)


def test_label_smoothing_uses_categorical_crossentropy_on_one_hot_labels():
    loss = loss_for(make_config(training={"label_smoothing": 0.1}))
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.label_smoothing == pytest.approx(0.1)
    # smoothing spreads 0.1 over the 2 classes: a perfect prediction still costs something
    value = loss(np.array([[1.0, 0.0]]), np.array([[1.0 - 1e-7, 1e-7]]))
    assert float(keras.ops.convert_to_numpy(value)) > 0.1

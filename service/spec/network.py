"""The sections of a config that make the network and how it is optimized: `model` (the
declarative CNN or a factory), `optimizer`, `schedule` (the learning rate over steps) and
`augmentation` (Keras preprocessing layers inside the model, active only in training).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SerializationInfo, field_validator, model_serializer, model_validator

from service.spec.base import MAX_STEPS, Patience, Rate, Steps, StrictModel

Activation = Literal["relu", "gelu", "elu", "selu", "swish", "tanh", "leaky_relu"]


# Model


class ConvBlock(StrictModel):
    filters: Annotated[int, Field(gt=0, le=4096)] = 32
    kernel_size: Annotated[int, Field(gt=0, le=15)] = 3
    convs: Annotated[int, Field(gt=0, le=8)] = 1
    """Convolutions in the block, each followed by batch norm (optional) and the activation."""
    stride: Annotated[int, Field(gt=0, le=4)] = 1
    padding: Literal["same", "valid"] = "same"
    batch_norm: bool = False
    pooling: Literal["max", "avg", "none"] = "max"
    pool_size: Annotated[int, Field(gt=0, le=8)] = 2
    activation: Activation = "relu"


class ModelSpec(StrictModel):
    factory: str | None = None
    """`package.module:function` building an uncompiled keras.Model, installed on the workers;
    called as `function(config, input_shape, num_classes)`. Replaces the declarative CNN."""
    conv_blocks: list[ConvBlock] = Field(
        default_factory=lambda: [ConvBlock(filters=32), ConvBlock(filters=64)], max_length=32
    )
    global_pool: Literal["flatten", "avg", "max"] = "flatten"
    dense: list[Annotated[int, Field(gt=0, le=65536)]] = Field(default_factory=lambda: [128], max_length=16)
    dense_activation: Activation = "relu"
    dropout: Rate = 0.0
    """Dropout before each dense layer of the head (and before the output layer)."""
    conv_dropout: Rate = 0.0
    """Dropout after each conv block."""
    l2: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """L2 weight decay on conv and dense kernels."""
    factory_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """Set by the planner, not by hand: the sha256 of the factory module's source, so that the
    builder's code is part of the run's identity (service/factories.py)."""

    @model_serializer(mode="wrap")
    def _without_absent_digest(self, handler, info: SerializationInfo) -> dict[str, Any]:
        # Absent (no factory) it is left out, so the run ids of such configs stay as they were.
        data = handler(self)
        if isinstance(data, dict) and data.get("factory_sha256") is None:
            data.pop("factory_sha256", None)
        return data

    @field_validator("factory")
    @classmethod
    def _factory_path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must look like 'package.module:function'")
        return value

    @model_validator(mode="after")
    def _has_layers(self) -> ModelSpec:
        if self.factory is None and not self.conv_blocks:
            raise ValueError("conv_blocks must not be empty unless a factory builds the model")
        return self


# Optimizer


class _OptimizerBase(StrictModel):
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)] = 0.001
    clipnorm: Annotated[float, Field(gt=0.0, le=1e6)] | None = None


class Adam(_OptimizerBase):
    name: Literal["adam"]
    beta_1: Rate = 0.9
    beta_2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999


class AdamW(_OptimizerBase):
    name: Literal["adamw"]
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.004
    beta_1: Rate = 0.9
    beta_2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999


class SGD(_OptimizerBase):
    name: Literal["sgd"]
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)] = 0.01
    momentum: Rate = 0.0
    nesterov: bool = False


class RMSprop(_OptimizerBase):
    name: Literal["rmsprop"]
    rho: Rate = 0.9
    momentum: Rate = 0.0


OptimizerSpec = Annotated[Adam | AdamW | SGD | RMSprop, Field(discriminator="name")]


# Learning-rate schedule


class Constant(StrictModel):
    name: Literal["constant"]


class ExponentialDecay(StrictModel):
    name: Literal["exponential_decay"]
    decay_steps: Steps = 1000
    decay_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.96
    staircase: bool = False


class Cosine(StrictModel):
    name: Literal["cosine"]
    decay_steps: Steps | None = None
    """Steps to decay over after the warm-up; default: the whole training run."""
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    warmup_steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 0


class Piecewise(StrictModel):
    name: Literal["piecewise"]
    boundaries: Annotated[list[Steps], Field(max_length=100)]
    """Step boundaries; `values` has one more entry than `boundaries`."""
    values: Annotated[list[Annotated[float, Field(gt=0.0, le=10.0)]], Field(max_length=101)]

    @model_validator(mode="after")
    def _lengths(self) -> Piecewise:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("values must have exactly one more entry than boundaries")
        if self.boundaries != sorted(set(self.boundaries)):
            raise ValueError("boundaries must be strictly increasing")
        return self


class ReduceOnPlateau(StrictModel):
    name: Literal["reduce_on_plateau"]
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    patience: Patience = 3
    min_lr: Annotated[float, Field(ge=0.0, le=10.0)] = 1e-6


ScheduleSpec = Annotated[
    Constant | ExponentialDecay | Cosine | Piecewise | ReduceOnPlateau,
    Field(discriminator="name"),
]


# Augmentation (Keras preprocessing layers inside the model, active only in training)


class AugmentationSpec(StrictModel):
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    """Fraction of a full turn (0.1 = up to ±36 degrees)."""
    zoom: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    translation: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Fraction of height and width."""
    contrast: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    random_crop: Annotated[int, Field(ge=0, le=64)] = 0
    """Pixels of zero padding before cropping back to the input size (0 = off)."""

    @property
    def enabled(self) -> bool:
        return any(value not in (False, 0, 0.0) for value in self.model_dump().values())


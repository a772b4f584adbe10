"""The study spec: a baseline training config plus the ablation to run around it.

`TrainConfig` is everything one run needs (dataset, model, optimizer, schedule, augmentation,
training); `StudySpec` is a `TrainConfig` with a name and an `ablation` section. Factor paths in
the ablation are dotted paths into `TrainConfig` (`optimizer.learning_rate`, `model.dropout`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SerializationInfo, field_validator, model_serializer, model_validator

from service.spec.base import StrictModel
from service.spec.datasets import DatasetSpec, DigitsDataset
from service.text import has_unsafe, printable

PositiveInt = Annotated[int, Field(gt=0)]
# Every integer that reaches a library has that library's bound (TensorFlow's step counters
# and schedule boundaries are int32/int64 tensors, scikit-learn's seeds 32-bit): an error that
# names the field instead of an OverflowError in a worker.
MAX_STEPS = 1_000_000_000
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS)]
Patience = Annotated[int, Field(ge=0, le=10_000)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
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


# Training

ClassKey = Annotated[str, Field(min_length=1, max_length=200)]
ClassWeight = Annotated[float, Field(gt=0.0, le=1e6)]
FULL_DUMP_KEY = "with_later_defaults"
FULL_DUMP = {FULL_DUMP_KEY: True}
"""`model_dump(mode="json", context=FULL_DUMP)`: every field, the later options at their
defaults included (a config whose paths are set one by one needs them present)."""
LATER_TRAINING_DEFAULTS: dict[str, Any] = {
    "class_weight": None,
    "resample": "none",
    "train_fraction": 1.0,
    "holdout": None,
}
"""Training options left out of the canonical dump at their default (run ids unchanged)."""


class EarlyStopping(StrictModel):
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    patience: Patience = 5
    min_delta: Annotated[float, Field(ge=0.0, le=1e6)] = 0.0


class Holdout(StrictModel):
    """Hold out one fold of the training split: the run trains on the other `folds - 1` and
    stores its predicted class probabilities for the held-out fold (out-of-fold predictions,
    for finding mislabelled samples). Folds are stratified and drawn by the dataset's
    `split_seed`, never the run's seed, so the `folds` runs of one config partition the split."""

    folds: Annotated[int, Field(ge=2, le=20)]
    fold: Annotated[int, Field(ge=0, lt=20)]
    """Which fold is held out, 0 .. folds - 1."""

    @model_validator(mode="after")
    def _fold_in_range(self) -> Holdout:
        if self.fold >= self.folds:
            raise ValueError(f"fold must be between 0 and folds - 1 = {self.folds - 1} (got {self.fold})")
        return self


class TrainingSpec(StrictModel):
    epochs: Annotated[int, Field(gt=0, le=10_000)] = 10
    batch_size: Annotated[int, Field(gt=0, le=65_536)] = 32
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    early_stopping: EarlyStopping | None = None
    mixed_precision: bool | Literal["float16", "bfloat16"] = False
    """false (float32), true (bfloat16 on GPUs of compute capability 8.0+, else float16),
    float16 or bfloat16; applied on GPUs only, the output layer always float32."""
    jit_compile: bool = False
    """XLA; turned off for augmentation layers it cannot compile (rotation, zoom,
    translation, random_crop)."""
    steps_per_execution: Annotated[int, Field(gt=0, le=10_000)] = 1
    class_weight: Literal["balanced"] | dict[ClassKey, ClassWeight] | None = None
    """Loss weight per class: null (all 1), "balanced" (n / (K x count), scikit-learn's rule,
    from the training split) or {class name or index: weight}, unlisted classes 1. A key is a
    class name first, else an index (names are checked against the dataset when it is
    planned)."""
    resample: Literal["none", "oversample"] = "none"
    """oversample: each epoch draws as many samples as the training split, every class
    equally often (a minority class's samples repeat); the epoch's length is unchanged."""
    train_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """Train on this stratified share of the training split (nested: 0.25 is inside 0.5), for
    a learning curve. The validation and test splits are untouched, and an epoch still draws
    as many samples as the whole training split, so every fraction gets the same updates."""
    holdout: Holdout | None = None
    """Out-of-fold run: `{folds: K, fold: i}` trains without fold i of the training split and
    writes that fold's predictions (`held_out.json` in the run's folder)."""

    @model_serializer(mode="wrap")
    def _without_defaults_of_later_options(
        self, handler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Options added after run ids were first stored are left out at their default, so the
        # canonical JSON (and the run_id) of every earlier config is unchanged. A dump with
        # context FULL_DUMP keeps them, for code that sets fields by path into a dumped config.
        data = handler(self)
        if isinstance(data, dict) and not (info.context or {}).get(FULL_DUMP_KEY):
            for name, default in LATER_TRAINING_DEFAULTS.items():
                if name in data and data[name] == default:
                    del data[name]
        return data

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight_keys(cls, value: object) -> object:
        # YAML reads `3: 2.0` with an int key and JSON only has string keys: one form (text),
        # so a spec and its stored run.json give the same config.
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, bool) or not isinstance(key, (int, str)):
                    raise ValueError(f"key {key!r} must be a class name or a class index")
                if isinstance(key, int) and key < 0:
                    raise ValueError(f"key {key} must be a class index of 0 or more")
            return {str(key): weight for key, weight in value.items()}
        if value is not None and value != "balanced":
            raise ValueError('must be null, "balanced" or a mapping of classes to weights')
        return value

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision_choice(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if not (isinstance(value, bool) or value in ("float16", "bfloat16")):
            raise ValueError("must be false, true, float16 or bfloat16")
        return value


class TrainConfig(StrictModel):
    """Everything one run trains with, apart from its seed."""

    dataset: DatasetSpec = Field(default_factory=lambda: DigitsDataset(kind="digits"))
    model: ModelSpec = Field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = Field(default_factory=lambda: Adam(name="adam"))
    schedule: ScheduleSpec = Field(default_factory=lambda: Constant(name="constant"))
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @model_validator(mode="after")
    def _plateau_needs_validation(self) -> TrainConfig:
        monitors = []
        if isinstance(self.schedule, ReduceOnPlateau):
            monitors.append(("schedule.monitor", self.schedule.monitor))
        if self.training.early_stopping is not None:
            monitors.append(("training.early_stopping.monitor", self.training.early_stopping.monitor))
        for field, monitor in monitors:
            if monitor.startswith("val_") and self.dataset.validation_split == 0.0:
                raise ValueError(f"{field} is {monitor!r} but dataset.validation_split is 0")
        return self


# Ablation


class Factor(StrictModel):
    """One factor to ablate.

    With `path`, each value is set at that dotted path of the baseline config. Without `path`,
    each value is a mapping of dotted paths to values, changed together (one variant each).
    """

    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    path: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    values: Annotated[list[Any], Field(min_length=1, max_length=1000)]
    labels: list[Annotated[str, Field(min_length=1, max_length=80)]] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Factor:
        if self.path is None:
            for index, value in enumerate(self.values):
                if not isinstance(value, dict) or not value:
                    raise ValueError(
                        f"values[{index}] must be a mapping of dotted paths to values "
                        "when the factor has no 'path'"
                    )
                if not all(isinstance(key, str) for key in value):
                    raise ValueError(f"values[{index}]: factor paths must be strings")
                if any(not 0 < len(key) <= 200 for key in value):
                    raise ValueError(f"values[{index}]: factor paths must have 1 to 200 characters")
        if self.labels is not None and len(self.labels) != len(self.values):
            raise ValueError("labels must have one entry per value")
        return self

    @field_validator("name", "labels")
    @classmethod
    def _printable_text(cls, value: Any) -> Any:
        # Shown in tables, reports and terminals: no ESC sequences or bidi overrides.
        for text in [value] if isinstance(value, str) else value or []:
            if has_unsafe(text):
                raise ValueError(f"{printable(text)} holds control or bidi characters")
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.path or "factor"


MAX_RUNS = 10_000
"""Upper bound of max_runs: a study's plan, statuses and report are held in memory."""

LOCO_COMPONENTS = (
    "dropout",
    "augmentation",
    "l2",
    "batch_norm",
    "schedule",
    "label_smoothing",
    "early_stopping",
    "dense",
)


class AblationSpec(StrictModel):
    strategy: Literal["one_at_a_time", "grid", "loco", "diagnose"] = "one_at_a_time"
    factors: list[Factor] = Field(default_factory=list, max_length=100)
    components: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=100)
    """For `loco`: components removed one at a time: dropout, augmentation, l2, batch_norm,
    schedule, label_smoothing, early_stopping, dense, or conv_block.N (block N, from 0)."""
    seeds: Annotated[int, Field(gt=0, le=1000)] | list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = 3
    max_runs: Annotated[int, Field(gt=0, le=MAX_RUNS)] = 500
    max_seeds: Annotated[int, Field(ge=2, le=1000)] | None = None
    """`ablate diagnose`: seeds per config at most, fresh ones for confirmation (default:
    twice the seeds, at least 5). Left out of the spec's dump when unset (study ids unchanged)."""

    @model_serializer(mode="wrap")
    def _without_unset_max_seeds(self, handler, info: SerializationInfo) -> dict[str, Any]:
        # Added after study ids were first stored: absent from the canonical dump when unset.
        data = handler(self)
        if isinstance(data, dict) and data.get("max_seeds") is None:
            data.pop("max_seeds", None)
        return data

    @field_validator("components")
    @classmethod
    def _known_components(cls, value: list[str]) -> list[str]:
        for component in value:
            if component not in LOCO_COMPONENTS and not re.fullmatch(r"conv_block\.\d+", component):
                known = ", ".join(LOCO_COMPONENTS) + ", conv_block.N"
                raise ValueError(f"unknown component {component!r} (known: {known})")
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if isinstance(value, int) and not isinstance(value, bool) and not 0 < value <= 1000:
            raise ValueError("a seed count must be between 1 and 1000, or give a list of seeds")
        if isinstance(value, list):
            for index, seed in enumerate(value):
                if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= 2**31 - 1:
                    raise ValueError(f"seeds[{index}] must be between 0 and 2147483647 (got {seed})")
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, list):
            if not value:
                raise ValueError("seeds list must not be empty")
            if len(set(value)) != len(value):
                raise ValueError("seeds must be distinct")
        return value

    @model_validator(mode="after")
    def _strategy_inputs(self) -> AblationSpec:
        if self.strategy == "diagnose" and self.factors:
            raise ValueError("strategy 'diagnose' builds its own variants; remove 'factors'")
        if self.strategy == "loco":
            if not self.components:
                raise ValueError("strategy 'loco' needs a non-empty 'components' list")
            if self.factors:
                raise ValueError("strategy 'loco' takes 'components', not 'factors'")
        elif self.components:
            raise ValueError(f"'components' is only used by strategy 'loco', not {self.strategy!r}")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class StudySpec(TrainConfig):
    """A study: a name, the baseline training config, and the ablation around it."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")]
    description: Annotated[str, Field(max_length=2000)] = ""
    ablation: AblationSpec = Field(default_factory=AblationSpec)

    @field_validator("description")
    @classmethod
    def _printable_description(cls, value: str) -> str:
        # Newlines and tabs are text; ESC sequences and bidi overrides rewrite the terminal.
        if has_unsafe(value.replace("\n", " ").replace("\t", " ")):
            raise ValueError("holds control or bidi characters")
        return value

    def baseline(self) -> TrainConfig:
        return TrainConfig.model_validate(
            self.model_dump(exclude={"name", "description", "ablation"}), strict=False
        )

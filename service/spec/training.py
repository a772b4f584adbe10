"""The `training` section of a config: epochs, batch size, early stopping, precision, class
weights and resampling, the share of the training split, and out-of-fold holdout; and how options
added later stay out of the canonical dump at their default, so earlier run ids are unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializationInfo, field_validator, model_serializer, model_validator

from service.spec.base import Patience, StrictModel

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

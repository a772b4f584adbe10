"""The study spec: a baseline training config plus the ablation to run around it.

`TrainConfig` is everything one run needs (dataset, model, optimizer, schedule, augmentation,
training); `StudySpec` is a `TrainConfig` with a name and an `ablation` section. Factor paths in
the ablation are dotted paths into `TrainConfig` (`optimizer.learning_rate`, `model.dropout`).
The sections are in `datasets.py`, `network.py`, `training.py` and `ablation.py`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from service.spec.ablation import AblationSpec
from service.spec.base import StrictModel
from service.spec.datasets import DatasetSpec, DigitsDataset
from service.spec.network import (
    Adam,
    AugmentationSpec,
    Constant,
    ModelSpec,
    OptimizerSpec,
    ReduceOnPlateau,
    ScheduleSpec,
)
from service.spec.training import TrainingSpec
from service.text import has_unsafe


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

"""The `ablation` section of a study spec: the strategy, the factors (dotted paths into
`TrainConfig` and their values) or the components to leave out, the seeds and the run budget.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SerializationInfo, field_validator, model_serializer, model_validator

from service.spec.base import StrictModel
from service.text import has_unsafe, printable


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

"""A `grid` study's design read back from its spec and variants: the factors, each one's
levels (overrides and labels) and the level equal to the baseline's own setting, and the cells
(each grid variant with the level of every factor it sets). `factorial` fits the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from service.report.configs import apply_overrides, flatten, variant_config
from service.report.study_data import StudyData, VariantRecord
from service.spec.ablation import Factor
from service.spec.models import TrainConfig

LABEL_WIDTH = 40
"""A level's label is cut to this many characters."""


@dataclass
class GridFactor:
    """A factor of the grid: its name, its levels' overrides and labels, the baseline's level."""

    name: str
    levels: list[dict[str, Any]]
    labels: list[str]
    baseline_level: int | None

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(path for level in self.levels for path in level))


@dataclass
class Cell:
    levels: tuple[int, ...]
    record: VariantRecord

    @property
    def accuracies(self) -> list[float]:
        return [run.metrics.test.accuracy for run in self.record.runs if run.metrics is not None]


def grid_factors(data: StudyData) -> list[GridFactor]:
    """The grid's factors from the spec, each with the level that equals the baseline's setting."""
    base = variant_config(data, data.variants[0])
    flat_base = flatten(base)
    factors = []
    for raw in data.spec["ablation"]["factors"]:
        factor = Factor.model_validate(raw)
        levels = (
            [{factor.path: value} for value in factor.values]
            if factor.path is not None
            else [dict(value) for value in factor.values]
        )
        labels = factor.labels or [_level_label(level, factor.path) for level in levels]
        baseline_level = next(
            (i for i, level in enumerate(levels) if _is_baseline_level(base, flat_base, level)),
            None,
        )
        factors.append(GridFactor(factor.display_name, levels, _distinct(labels), baseline_level))
    return factors


def _level_label(level: dict[str, Any], path: str | None) -> str:
    values = [_value_text(value) for value in level.values()]
    text = (
        values[0]
        if path is not None
        else ", ".join(f"{p}={v}" for p, v in zip(level, values, strict=True))
    )
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 1] + "…"


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return str(value)


def _distinct(labels: list[str]) -> list[str]:
    """Labels cut to the same text get a number, so every level reads apart."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return result


def _is_baseline_level(base: dict[str, Any], flat_base: dict[str, Any], level: dict) -> bool:
    """The level sets what the baseline already has: the baseline with it applied, resolved
    (defaults filled), agrees with the baseline under each path the level sets."""
    try:
        resolved = flatten(
            TrainConfig.model_validate(apply_overrides(base, level)).model_dump(mode="json")
        )
    except (ValidationError, ValueError, TypeError, KeyError, IndexError):
        return False
    for path in level:
        keys = [
            k for k in resolved.keys() | flat_base.keys() if k == path or k.startswith(path + ".")
        ]
        if any(resolved.get(k) != flat_base.get(k) for k in keys):
            return False
    return True


def grid_cells(data: StudyData, factors: list[GridFactor]) -> list[Cell]:
    """Each grid variant with the level of every factor its overrides set."""
    cells = []
    for record in data.variants[1:]:
        if record.factor != "grid":
            continue
        levels = []
        for factor in factors:
            index = next(
                (
                    i
                    for i, level in enumerate(factor.levels)
                    if all(
                        p in record.overrides and record.overrides[p] == v for p, v in level.items()
                    )
                ),
                None,
            )
            levels.append(index)
        if None not in levels:
            cells.append(Cell(tuple(levels), record))  # type: ignore[arg-type]
    return cells

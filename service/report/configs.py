"""Run configs as flat dotted keys: what a variant changed relative to the baseline.

The diagnosis decides which rule a variant speaks to (a lower learning rate, more dropout, a
flip) from the difference between its resolved run config and the baseline's, never from its
name, so a hand-written factor and a `diagnose` battery variant are read the same way.
"""

from __future__ import annotations

import copy
from typing import Any

from service.report.study_data import StudyData, VariantRecord

Change = tuple[Any, Any]
"""(baseline value, variant value); None stands for a path one side does not have."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """`{"model": {"dense": [128]}}` -> `{"model.dense.0": 128}`; empty containers stay leaves."""
    if isinstance(config, dict) and config:
        items = config.items()
    elif isinstance(config, list) and config:
        items = ((str(index), value) for index, value in enumerate(config))
    else:
        return {prefix: config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def changes(baseline: dict[str, Any], variant: dict[str, Any]) -> dict[str, Change]:
    """Dotted paths whose values differ between two configs, with both values."""
    old, new = flatten(baseline), flatten(variant)
    return {
        path: (old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    }


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with dotted-path overrides set (paths the config lacks are created)."""
    result = copy.deepcopy(config)
    for path, value in overrides.items():
        parts = path.split(".")
        node: Any = result
        for part in parts[:-1]:
            key: Any = int(part) if isinstance(node, list) else part
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
        node[last] = copy.deepcopy(value)
    return result


def variant_config(data: StudyData, variant: VariantRecord) -> dict[str, Any]:
    """The variant's resolved config: from its runs, else the study spec plus its overrides
    (a run whose run.json is missing has an empty config)."""
    for run in variant.runs:
        if run.config:
            return run.config
    baseline = {k: v for k, v in data.spec.items() if k not in ("name", "description", "ablation")}
    return apply_overrides(baseline, variant.overrides)

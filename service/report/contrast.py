"""A variant next to the baseline: what it changed, how it compares, and the finding it backs.

The diagnosis rules (`rules`) read variants only through `Contrast`: the config paths a variant
changed relative to the baseline's run config, and its Welch comparison from `stats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from service.report.configs import Change, changes, flatten, variant_config
from service.report.models import StudyData, VariantRecord, VariantStats


@dataclass
class Contrast:
    """A variant next to the baseline: what it changed and how its test accuracy compares."""

    record: VariantRecord
    stats: VariantStats
    config: dict[str, Any]
    changes: dict[str, Change]

    @property
    def name(self) -> str:
        return self.stats.name

    @property
    def delta(self) -> float:
        return self.stats.vs_baseline.delta if self.stats.vs_baseline else 0.0

    @property
    def significant(self) -> bool:
        return self.stats.vs_baseline is not None and self.stats.vs_baseline.significant

    @property
    def better(self) -> bool:
        return self.significant and self.delta > 0

    @property
    def worse(self) -> bool:
        return self.significant and self.delta < 0

    @property
    def all_diverged(self) -> bool:
        return self.stats.seeds > 0 and self.stats.diverged == self.stats.seeds

    def only(self, *prefixes: str) -> bool:
        """Every changed path lies under one of `prefixes`."""
        return bool(self.changes) and all(
            any(path == p or path.startswith(p + ".") for p in prefixes) for path in self.changes
        )

    def direction(self) -> int | None:
        """+1 when every changed value grows (False -> True, 0 -> 0.1), -1 when every one
        shrinks, None when mixed or not numbers."""
        signs = set()
        for old, new in self.changes.values():
            if not all(isinstance(v, (int, float)) or v is None for v in (old, new)):
                return None
            signs.add(1 if (new or 0) > (old or 0) else -1)
        return signs.pop() if len(signs) == 1 else None


@dataclass
class Study:
    """The baseline and every variant that differs from it."""

    data: StudyData
    baseline: VariantStats
    baseline_record: VariantRecord
    config: dict[str, Any]
    contrasts: list[Contrast]
    alpha: float

    @cached_property
    def flat(self) -> dict[str, Any]:
        """The baseline's config as dotted paths."""
        return flatten(self.config)


def build_study(data: StudyData, stats: list[VariantStats], alpha: float) -> Study:
    base_record = data.variants[0]
    base_config = variant_config(data, base_record)
    base_ids = [run.run_id for run in base_record.runs]
    contrasts = []
    for record, variant in zip(data.variants[1:], stats[1:], strict=True):
        config = variant_config(data, record)
        changed = changes(base_config, config)
        if changed and [run.run_id for run in record.runs] != base_ids:
            contrasts.append(Contrast(record, variant, config, changed))
    return Study(data, stats[0], base_record, base_config, contrasts, alpha)


# Evidence


def effect(study: Study, c: Contrast) -> dict[str, Any]:
    comparison = c.stats.vs_baseline
    assert comparison is not None
    return {
        "variant": c.name,
        "changes": {path: list(values) for path, values in c.changes.items()},
        "delta": comparison.delta,
        "ci_low": comparison.ci_low,
        "ci_high": comparison.ci_high,
        "p_value": comparison.p_value,
        "p_adjusted": comparison.p_adjusted,
        "effect_size": comparison.effect_size,
        "baseline_mean": study.baseline.test_accuracy.mean,
        "variant_mean": c.stats.test_accuracy.mean,
        "baseline_seeds": study.baseline.test_accuracy.n,
        "variant_seeds": c.stats.test_accuracy.n,
    }

"""A variant next to the baseline: what it changed, how it compares, and the finding it backs.

The diagnosis rules (`rules`) read variants only through `Contrast`: the config paths a variant
changed relative to the baseline's run config, and its Welch comparison from `stats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from service.report.analysis_models import Factorial
from service.report.configs import Change, apply_overrides, changes, flatten, variant_config
from service.report.stats import variant_stats
from service.report.study_data import StudyData, VariantRecord
from service.report.variant_models import Comparison, VariantStats
from service.spec.models import TrainConfig


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
    def metric(self) -> str:
        """What the comparison is on: test_accuracy, or balanced_accuracy (class balance)."""
        return self.stats.vs_baseline.metric if self.stats.vs_baseline else "test_accuracy"

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
class StudyContrasts:
    """A study as the diagnosis reads it: the baseline and every variant that differs from it
    (the user-facing study is `service.client.Study`)."""

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


def build_study(data: StudyData, stats: list[VariantStats], alpha: float) -> StudyContrasts:
    base_record = data.variants[0]
    base_config = variant_config(data, base_record)
    base_ids = [run.run_id for run in base_record.runs]
    contrasts = []
    for record, variant in zip(data.variants[1:], stats[1:], strict=True):
        config = variant_config(data, record)
        changed = changes(base_config, config)
        if changed and [run.run_id for run in record.runs] != base_ids:
            contrasts.append(Contrast(record, variant, config, changed))
    return StudyContrasts(data, stats[0], base_record, base_config, contrasts, alpha)


def main_effect_contrasts(study: StudyContrasts, factorial: Factorial | None) -> list[Contrast]:
    """A grid's main effects as contrasts with the baseline, so the diagnosis reads them with
    the same rules as a variant: the change is the level's overrides, the comparison is the
    main effect (averaged over the other factors), the runs are every run at that level."""
    if factorial is None:
        return []
    records = {record.name: record for record in study.data.variants}
    names = [factor.factor for factor in factorial.factors]
    found = []
    for main in factorial.main_effects:
        index = names.index(main.factor)
        runs = [
            run
            for cell in factorial.cells
            if cell.levels[index] == main.level and cell.variant in records
            for run in records[cell.variant].runs
        ]
        record = VariantRecord(
            name=f"{main.factor} = {main.level} (main effect)",
            factor=main.factor,
            overrides=main.overrides,
            runs=runs,
        )
        comparison = Comparison(
            delta=main.delta,
            ci_low=main.ci_low,
            ci_high=main.ci_high,
            p_value=main.p_value,
            effect_size=None,
            p_adjusted=main.p_adjusted,
            significant=main.significant,
        )
        stats = variant_stats(record, None).model_copy(update={"vs_baseline": comparison})
        config = _resolved(study.config, main.overrides)
        found.append(Contrast(record, stats, config, changes(study.config, config)))
    return [c for c in found if c.changes]


def _resolved(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The config with `overrides` applied and its defaults filled, as a run's config is."""
    changed = apply_overrides(config, overrides)
    try:
        return TrainConfig.model_validate(changed).model_dump(mode="json")
    except (ValidationError, ValueError):
        return changed


# Evidence


def effect(study: StudyContrasts, c: Contrast) -> dict[str, Any]:
    comparison = c.stats.vs_baseline
    assert comparison is not None
    found = {
        "variant": c.name,
        "changes": {path: list(values) for path, values in c.changes.items()},
        "metric": comparison.metric,
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
    if comparison.metric == "balanced_accuracy":
        # The means compared, and what plain test accuracy did meanwhile.
        base, mine = study.baseline.balanced_accuracy, c.stats.balanced_accuracy
        found["baseline_mean"] = base.mean if base else None
        found["variant_mean"] = mine.mean if mine else None
        plain = (c.stats.test_accuracy.mean, study.baseline.test_accuracy.mean)
        found["test_accuracy_delta"] = None if None in plain else plain[0] - plain[1]
    return found

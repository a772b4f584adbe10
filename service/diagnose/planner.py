"""The next stage of a staged diagnosis, from the stages done and the study's summary so far.

baseline -> search (tier 0: where the symptoms point; the next tier only when a search found
nothing; a short battery when the baseline shows no symptom) -> confirm (open comparisons on
fresh seeds) -> repair (the fixes merged, when they are more than one) -> done. Every variant
is the baseline with dotted-path overrides, validated as the spec's own (`TrainConfig`, and the
model's shapes when the data's are known), never a config the study already trained, and the
stage fits the runs left in the budget: the lowest-ranked variants are cut, and the reason says so.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.diagnose.confirm import (
    confirmation_seed_count,
    fresh_seeds,
    open_comparisons,
)
from service.diagnose.models import (
    BASELINE,
    REPAIRED,
    DataShape,
    Stage,
    StageVariant,
)
from service.diagnose.repair import findings, outranked, screening_fixes
from service.diagnose.search import (
    active_symptoms,
    glaring_causes,
    last_tier,
    search_reason,
    search_variants,
    tier_causes,
    whole_fold_sets,
)
from service.identity import canonical_json
from service.plan import diagnose_battery
from service.report.configs import apply_overrides
from service.report.models import Summary
from service.report.variant_models import CONFIRM_SUFFIX
from service.spec.models import TrainConfig
from service.spec.shapes import ShapeError, check_model
from service.spec.training import FULL_DUMP

HEALTHY_PROBES = {"learning_rate": 2, "width": 1, "epochs": 1}
"""The short battery for a baseline without symptoms: the last N probes of these factors of
`diagnose_battery` (the rate x0.3 and x3, double width, double epochs)."""


def next_stage(
    baseline: dict[str, Any],
    stages: list[Stage],
    summary: Summary | None,
    budget_runs: int,
    max_seeds: int,
    seeds: list[int],
    data: DataShape | None = None,
) -> Stage | None:
    """The stage to train next, or None when the diagnosis is done.

    `baseline`: the baseline's resolved config (a TrainConfig as JSON); `stages`: the stages
    done, in order, all of their runs final; `summary`: the report's Summary of the study so
    far (None before any run); `budget_runs`: runs left; `max_seeds`: seeds per config at most;
    `seeds`: the spec's seeds (the baseline's and the searches'); `data`: the dataset's shapes.
    """
    space = _Space(baseline, stages, data)
    index = len(stages)
    if budget_runs <= 0:
        return None
    if not stages:
        chosen = seeds[:budget_runs]
        note = "" if len(chosen) == len(seeds) else f" (cut to {len(chosen)} by the budget)"
        reason = f"Train the baseline on {len(chosen)} seeds{note} and read its symptoms."
        return Stage(
            index=0, kind="baseline", reason=reason, variants=[space.baseline], seeds=chosen
        )
    if summary is None or not summary.variants:
        return None
    if summary.variants[0].succeeded + summary.variants[0].diverged == 0:
        return None  # no baseline run ended in training: no symptom to read
    kinds = [stage.kind for stage in stages]
    if "repair" in kinds:
        return None
    if "confirm" not in kinds:
        stage = _confirmation(space, summary, stages, budget_runs, max_seeds, seeds)
        if stage is not None:
            return stage
    found = findings(summary, stages, data.test_samples if data else None)
    if found.fixes or "confirm" in kinds:
        return _repair(space, found.repaired, found.fixes, index, budget_runs, seeds)
    return _search(space, summary, kinds.count("search"), index, budget_runs, seeds)


class _Space:
    """The configs around the baseline: validation, and what the study already trained."""

    def __init__(self, baseline: dict[str, Any], stages: list[Stage], data: DataShape | None):
        config = TrainConfig.model_validate(baseline, strict=False)
        self.full = config.model_dump(mode="json", context=FULL_DUMP)
        self.factory = config.model.factory is not None
        self.data = data
        self.baseline = StageVariant(name=BASELINE, factor=None, overrides={})
        self.names = {v.name for stage in stages for v in stage.variants}
        self.trained = {self.key({})}
        for stage in stages:
            for variant in stage.variants:
                key = self.key(variant.overrides)
                if key is not None:
                    self.trained.add(key)

    def key(self, overrides: dict[str, Any]) -> str | None:
        """The canonical JSON of the baseline with `overrides`; None when it does not
        validate or cannot be built for the data."""
        try:
            config = TrainConfig.model_validate(apply_overrides(self.full, overrides))
            if self.data is not None:
                check_model(config, self.data.input_shape, self.data.num_classes)
        except (ValidationError, ShapeError, ValueError, TypeError, KeyError, IndexError):
            return None
        return canonical_json(config.model_dump(mode="json"))

    def new(self, variants: list[StageVariant]) -> tuple[list[StageVariant], list[str]]:
        """The variants that validate and were not trained (each config once), and notes."""
        kept, notes, seen = [], [], set(self.trained)
        skipped_model = False
        for variant in variants:
            if self.factory and any(p.startswith("model.") for p in variant.overrides):
                skipped_model = True
                continue
            key = self.key(variant.overrides)
            if key is None:
                notes.append(f"{variant.name} skipped: not a valid config for this model and data")
                continue
            if key in seen:
                continue
            seen.add(key)
            kept.append(self._unique(variant))
        if skipped_model:
            notes.insert(0, "the model is built by a factory, so changes to its architecture, "
                         "dropout and L2 are out of the spec's reach and skipped")  # fmt: skip
        return kept, notes

    def _unique(self, variant: StageVariant) -> StageVariant:
        # The driver merges variants of one name across stages: a new config gets a new name.
        name, count = variant.name, 1
        while name in self.names:
            count += 1
            name = f"{variant.name} #{count}"
        self.names.add(name)
        return variant.model_copy(update={"name": name})


def _cut(variants: list[StageVariant], seeds: int, budget: int) -> tuple[list[StageVariant], str]:
    """The most direct variants whose runs (each on the stage's seeds, or its own) fit `budget`;
    out-of-fold runs only as a whole set."""
    kept, used = [], 0
    for variant in variants:
        cost = len(variant.seeds) if variant.seeds is not None else max(1, seeds)
        if used + cost > budget:
            break
        kept.append(variant)
        used += cost
    kept = whole_fold_sets(kept, variants)
    if len(kept) == len(variants):
        return variants, ""
    return kept, (
        f"The budget ({budget} runs left) keeps the {len(kept)} most direct of {len(variants)} "
        "variants."
    )


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _search(
    space: _Space, summary: Summary, searches: int, index: int, budget: int, seeds: list[int]
) -> Stage | None:
    symptoms = active_symptoms(summary)
    if not symptoms:
        if searches:
            return None  # the short battery ran and found nothing: nothing to fix
        variants, notes = space.new(_healthy_battery(space.full))
        reason = (
            "The baseline shows no symptom: a short battery (a learning rate three times lower "
            "and higher, a wider model, more epochs) checks that no usual change helps."
        )
    else:
        variants, notes, tier, reason = [], [], searches, ""
        while not variants and tier <= last_tier(symptoms):
            causes = tier_causes(symptoms, tier)
            if tier == 0:  # what the config itself points at comes first
                glaring = glaring_causes(space.full, symptoms)
                causes = list(dict.fromkeys([*glaring, *causes]))
            variants, notes = space.new(search_variants(causes, space.full, seeds[0]))
            reason = search_reason(symptoms, causes, tier)
            tier += 1
    variants, cut = _cut(variants, len(seeds), budget)
    if not variants:
        return None
    said = "; ".join(notes)
    text = _join(reason, said[:1].upper() + said[1:] + ("." if said else ""), cut)
    return Stage(index=index, kind="search", reason=text, variants=variants, seeds=seeds)


def _healthy_battery(baseline: dict[str, Any]) -> list[StageVariant]:
    battery = diagnose_battery(baseline)
    chosen = []
    for factor, count in HEALTHY_PROBES.items():
        of_factor = [b for b in battery if b[1] == factor]
        chosen += of_factor[-count:]
    return [StageVariant(name=n, factor=f, overrides=o) for n, f, o in chosen]


def _confirmation(
    space: _Space,
    summary: Summary,
    stages: list[Stage],
    budget: int,
    max_seeds: int,
    seeds: list[int],
) -> Stage | None:
    del space  # a confirmation trains configs already trained, on fresh seeds
    settled = screening_fixes(summary, set())
    # A candidate that a larger settled fix overrules in the repair (same path) cannot change it.
    candidates = [c for c in open_comparisons(summary) if not outranked(c, settled)]
    if not candidates:
        return None
    count = confirmation_seed_count(summary, candidates, len(seeds), max_seeds)
    if count < 2:
        return None  # max_seeds leaves no room for a test on fresh seeds
    fit = budget // count - 1  # the baseline's fresh runs come first
    if fit < 1:
        count = budget // 2
        fit = 1 if count >= 2 else 0
    if fit < 1:
        return None
    chosen = candidates[:fit]
    cut = "" if len(chosen) == len(candidates) else (
        f" The budget ({budget} runs left) confirms the {len(chosen)} most promising of "
        f"{len(candidates)}."
    )  # fmt: skip
    variants = [StageVariant(name=BASELINE + CONFIRM_SUFFIX, factor=None, overrides={})] + [
        StageVariant(name=c.name + CONFIRM_SUFFIX, factor=c.factor, overrides=c.overrides)
        for c in chosen
    ]
    names = ", ".join(c.name for c in chosen)
    test = "Welch's t-test" + (f", Holm over the {len(chosen)}" if len(chosen) > 1 else "")
    reason = (
        f"Promising but not settled: {names}. Trained again with the baseline on {count} "
        f"fresh seeds, and decided on those seeds alone ({test}).{cut}"
    )
    return Stage(
        index=len(stages), kind="confirm", reason=reason, variants=variants,
        seeds=fresh_seeds(stages, count),
    )  # fmt: skip


def _repair(
    space: _Space,
    repaired: dict[str, Any],
    fixes: list[Any],
    index: int,
    budget: int,
    seeds: list[int],
) -> Stage | None:
    if len(fixes) < 2 or not repaired:
        return None  # one fix (or none): its own runs already measure the repaired config
    variants, _ = space.new([StageVariant(name=REPAIRED, factor="repair", overrides=repaired)])
    if not variants:
        return None
    chosen = seeds[:budget]
    if len(chosen) < 2:
        return None
    names = ", ".join(f.variant for f in sorted(fixes, key=lambda f: -f.gain))
    note = "" if len(chosen) == len(seeds) else f" (cut to {len(chosen)} seeds by the budget)"
    reason = (
        f"Repair: the fixes found ({names}) combined into one config, trained on the "
        f"baseline's seeds{note} and compared with the baseline."
    )
    return Stage(index=index, kind="repair", reason=reason, variants=variants, seeds=chosen)

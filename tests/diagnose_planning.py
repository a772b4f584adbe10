"""What the service.diagnose planner tests share: a planted study (`tests/planted_study.py`) read
by the real report (`summarize_study`), so that the planner sees the symptoms, comparisons and
intervals the driver will hand it; a stage already done; and the planner called on digits with
the study's seeds and budget."""

from __future__ import annotations

from service.diagnose import DataShape, Stage, StageVariant, next_stage
from service.report.models import Summary
from service.report.summary import summarize_study
from service.spec.models import TrainConfig
from service.spec.shapes import check_model
from tests.planted_study import clean_facts, config, make_study

SEEDS = [0, 1, 2]
DIGITS = DataShape(input_shape=(8, 8, 1), num_classes=10, test_samples=360)
CHANCE = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.0, "gap_sd": 0.0}


def summarize(variants: dict, seeds: int = 3, **options) -> Summary:
    options.setdefault("dataset", clean_facts())
    study = make_study(variants, seeds=seeds, **options)
    return summarize_study(study, generated_at="2024-05-01T12:00:00+00:00")


def stage(index: int, kind: str, variants: dict[str, dict], seeds: list[int] = SEEDS) -> Stage:
    """A stage done: `variants` maps names to overrides."""
    return Stage(
        index=index,
        kind=kind,
        reason="done",
        variants=[StageVariant(name=n, factor=None, overrides=o) for n, o in variants.items()],
        seeds=seeds,
    )


BASELINE_DONE = stage(0, "baseline", {"baseline": {}})


def plan(
    summary: Summary | None, stages: list[Stage], budget: int = 200, max_seeds: int = 10, base=None
):
    return next_stage(
        config(base=base),
        stages,
        summary,
        budget_runs=budget,
        max_seeds=max_seeds,
        seeds=SEEDS,
        data=DIGITS,
    )


def rates(found: Stage) -> list[float]:
    return [v.overrides["optimizer.learning_rate"] for v in found.variants]


def assert_buildable(found: Stage, base=None) -> None:
    """Every variant is a valid config that the declarative CNN can build on digits."""
    for variant in found.variants:
        from service.report.configs import apply_overrides
        from service.spec.training import FULL_DUMP

        full = TrainConfig.model_validate(config(base=base)).model_dump(
            mode="json", context=FULL_DUMP
        )
        built = TrainConfig.model_validate(apply_overrides(full, variant.overrides))
        check_model(built, DIGITS.input_shape, DIGITS.num_classes)

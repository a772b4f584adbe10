"""A realistic study for the report's renderers: its runs (`StudyData`, from
tests/report_study_data.py) and a `Summary` of them.

The summary is built here by hand (plain means and normal-approximation intervals), not by the
reporter's statistics, so that the renderers are tested on their own.
"""

from __future__ import annotations

import math

import numpy as np

from service.lifecycle.documents import EpochRecord
from service.report.diagnosis_models import Cause, Finding, Fix, Inconclusive, NextSteps, Statistics, Symptom
from service.report.models import Summary
from service.report.study_data import StudyData, VariantRecord
from service.report.variant_models import Comparison, Curves, MetricStats, VariantStats
from tests.report_study_data import XSS, Plan, default_plans, make_study_data


def _stats(values: list[float]) -> MetricStats:
    if not values:
        return MetricStats(n=0, mean=None, std=None, ci_low=None, ci_high=None)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    half = 2.0 * std / math.sqrt(len(values)) if std is not None else None
    return MetricStats(
        n=len(values),
        mean=mean,
        std=std,
        ci_low=mean - half if half is not None else None,
        ci_high=mean + half if half is not None else None,
    )


def _curves(histories: list[list[EpochRecord]]) -> Curves:
    epochs = min((len(h) for h in histories), default=0)
    columns = {}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        values = np.array(
            [[getattr(h[e], key) for e in range(epochs)] for h in histories], dtype=float
        ).reshape(len(histories), epochs)
        columns[f"{key}_mean"] = [float(v) for v in values.mean(axis=0)] if histories else []
        columns[f"{key}_std"] = [float(v) for v in values.std(axis=0)] if histories else []
    return Curves(epochs=list(range(1, epochs + 1)), learning_rate=[0.005] * epochs, **columns)


def _variant_stats(record: VariantRecord, plan: Plan, baseline: MetricStats | None) -> VariantStats:
    done = [run for run in record.runs if run.metrics is not None]
    tests = [run.metrics.test.accuracy for run in done]
    test_accuracy = _stats(tests)
    comparison = None
    if baseline is not None and baseline.mean is not None and test_accuracy.mean is not None:
        delta = test_accuracy.mean - baseline.mean
        comparison = Comparison(
            delta=delta,
            ci_low=delta - 0.02,
            ci_high=delta + 0.02,
            p_value=plan.p_value,
            effect_size=delta / 0.01,
            significant=plan.significant,
        )
    return VariantStats(
        name=record.name, factor=record.factor, overrides=record.overrides, run_ids=[run.run_id for run in record.runs],
        seeds=len(record.runs), succeeded=len(done), diverged=sum(r.state == "diverged" for r in record.runs),
        failed=sum(r.state not in ("succeeded", "diverged") for r in record.runs),
        test_accuracy=test_accuracy, test_loss=_stats([r.metrics.test.loss for r in done]),
        val_accuracy=_stats([r.metrics.history[-1].val_accuracy for r in done]),
        val_loss=_stats([r.metrics.history[-1].val_loss for r in done]),
        train_accuracy=_stats([r.metrics.history[-1].accuracy for r in done]),
        train_val_gap=_stats([r.metrics.history[-1].accuracy - r.metrics.history[-1].val_accuracy for r in done]),
        best_epoch=_stats([float(max(r.metrics.history, key=lambda e: e.val_accuracy).epoch) for r in done]),
        vs_baseline=comparison, curves=_curves([r.metrics.history for r in done]),
    )  # fmt: skip


def make_summary(data: StudyData, plans: list[Plan]) -> Summary:
    variants: list[VariantStats] = []
    for record, plan in zip(data.variants, plans, strict=True):
        baseline = variants[0].test_accuracy if variants else None
        variants.append(_variant_stats(record, plan, baseline))
    variants[0].vs_baseline = None
    counts: dict[str, int] = {}
    for record in data.variants:
        for run in record.runs:
            counts[run.state] = counts.get(run.state, 0) + 1
    by_name = {v.name: v.run_ids for v in variants}
    fix = Fix(
        variant="lr 0.001 + exponential decay",
        changes={"optimizer.learning_rate": 0.001},
        spec="optimizer:\n  learning_rate: 0.001",
        delta=0.057,
        ci_low=0.037,
        ci_high=0.077,
        p_adjusted=0.004,
    )
    causes = [
        Cause(
            rule="learning_rate_too_high",
            title="Learning rate too high: lr 0.001 + exponential decay gains +5.7 points",
            statement="lr 0.001 + exponential decay reaches 96.2% test accuracy against 90.5% for the baseline.",
            basis="fix",
            gain=0.057,
            fix=fix,
            try_next=[],
            advice="Set optimizer: {learning_rate: 0.001}.",
            symptoms=[],
            evidence={"fix": {"delta": 0.057}},
            variants=["baseline", "lr 0.001 + exponential decay"],
            run_ids=by_name.get("lr 0.001 + exponential decay", []),
        ),
        Cause(
            rule="class_imbalance",
            title=f"Class imbalance: class 8 at 40% recall {XSS}",
            statement="The minority class 8 reaches 40% recall against 95% for the others.",
            basis="symptom",
            gain=0.02,
            fix=None,
            try_next=[
                Fix(
                    variant=None,
                    changes={"training.label_smoothing": 0.1},
                    spec="training:\n  label_smoothing: 0.1",
                )
            ],
            advice="Rebalance the training data.",
            symptoms=["class_imbalance"],
            evidence={},
            variants=["baseline"],
            run_ids=[],
        ),
    ]
    symptoms = [
        Symptom(
            rule="class_imbalance",
            title=f"Class imbalance: 4x {XSS}",
            statement="The largest class has 4.0 times the samples of the smallest (class 8).",
            evidence={"ratio": 4.0, "per_class_recall": {"8": 0.4, "1": 0.95}},
            stake=0.02,
        ),
    ]
    strengths = [
        Finding(
            rule="over_regularization",
            kind="hurts",
            title="no dropout hurts: −3.1 points",
            statement="no dropout loses 3.1 points of test accuracy (95% CI −5.1 to −1.1, p = 0.01).",
            evidence={"delta": -0.031},
            variants=["baseline", "no dropout"],
            run_ids=by_name.get("no dropout", []),
            magnitude=0.031,
        ),
    ]
    statistics = Statistics(
        procedure="Benjamini-Hochberg",
        alpha=0.05,
        comparisons=3,
        seeds=3,
        detectable_effect=0.05,
        underpowered=True,
        statement="Significance: Benjamini-Hochberg over the study's 3 comparisons.",
    )
    next_steps = NextSteps(
        recommended={"optimizer.learning_rate": 0.001},
        recommended_spec="optimizer:\n  learning_rate: 0.001",
        combined_from=["lr 0.001 + exponential decay"],
        untested=False,
        next_study="next-study.yaml",
        next_study_reason="tests class imbalance",
        actions=["Set optimizer: {learning_rate: 0.001}."],
    )
    inconclusive = [
        Inconclusive(
            variant="no horizontal flip",
            delta=0.008,
            p_value=0.21,
            ci_low=-0.01,
            ci_high=0.026,
            seeds_needed=14,
            statement=(
                "The study cannot tell whether no horizontal flip changes test accuracy "
                "(+0.8 points, p=0.21); about 14 seeds per variant would be needed to detect "
                "an effect this size (3 now)."
            ),
        )
    ]
    notes = [
        f"Runs of {XSS} failed: r040a1b2c3d4e5f6 (out of memory).",
        "2 runs diverged (sgd lr 2.0).",
    ]
    return Summary(
        study_id=data.study_id, name="seed-study", generated_at="2024-05-01T12:00:00.000+00:00",
        partial=any(state not in ("succeeded", "diverged") for state in counts), counts=counts,
        baseline=variants[0].name, verdict=causes[0].title, variants=variants, causes=causes, symptoms=symptoms,
        strengths=strengths, facts=[], inconclusive=inconclusive, not_comparable=[], statistics=statistics,
        next_steps=next_steps, notes=notes,
    )  # fmt: skip


def make_study(
    plans: list[Plan] | None = None, classes: int = 10, epochs: int = 12
) -> tuple[Summary, StudyData]:
    plans = plans or default_plans()
    data = make_study_data(plans, classes=classes, epochs=epochs)
    return make_summary(data, plans), data


def long_names_grid(factors: int = 2, seeds: int = 3) -> tuple[Summary, StudyData]:
    """A grid whose factor names and level labels are long generated text (80 characters, the
    spec's limit), as a user's generated sweep names them: the report must stay readable."""
    from service.report.summary import summarize_study
    from tests.planted_study import clean_facts, make_grid

    paths = [
        ("optimizer.learning_rate", [0.001, 0.01, 0.0001]),
        ("model.dropout", [0.0, 0.25, 0.5]),
        ("training.batch_size", [32, 64]),
    ][:factors]
    spec_factors = [
        {
            "name": (f"generated_factor_{index}_{path.replace('.', '_')}_" + "x" * 80)[:80],
            "values": [{path: value} for value in values],
            "labels": [
                (f"level {value} of {path} from sweep configuration " + "y" * 80)[:80]
                for value in values
            ],
        }
        for index, (path, values) in enumerate(paths)
    ]
    data = make_grid(
        spec_factors,
        lambda lv: 0.88 + 0.03 * (lv[0] == 2) - 0.04 * (lv[0] == 1),
        seeds=seeds,
        sd=0.01,
        dataset=clean_facts(),
    )
    return summarize_study(data, generated_at="2024-05-01T12:00:00+00:00"), data

"""The runs of a realistic study for the report's renderers (`StudyData`): how each variant
behaves (`Plan`: its final accuracies, the states of its seeds, and the significance its
hand-built summary gives it), and the runs' histories, test metrics and statuses made from it.
`XSS`, a variant name that is a script, is one the renderers must escape.
tests/report_fixtures.py builds the `Summary` of these runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from service.lifecycle.documents import EpochRecord, RunMetrics, RunStatus, TestMetrics
from service.report.configs import apply_overrides
from service.report.study_data import RunRecord, StudyData, VariantRecord

XSS = "<script>alert(1)</script>"
BASE_CONFIG = {
    "dataset": {"kind": "digits", "validation_split": 0.1, "test_split": 0.25, "scale": "auto"},
    "model": {
        "conv_blocks": [{"filters": 32, "kernel_size": 3}, {"filters": 64, "kernel_size": 3}],
        "dense": [128],
        "dropout": 0.5,
    },
    "optimizer": {"name": "adam", "learning_rate": 0.005, "clipnorm": None},
    "schedule": {"name": "constant"},
    "augmentation": {"horizontal_flip": True},
    "training": {"epochs": 12, "batch_size": 32, "early_stopping": None},
}


@dataclass
class Plan:
    """How a fake variant behaves: its final accuracies and the states of its seeds."""

    name: str
    factor: str | None
    overrides: dict
    test_accuracy: float
    gap: float
    states: list[str] = field(default_factory=lambda: ["succeeded"] * 3)
    significant: bool = False
    p_value: float | None = 0.3


def default_plans() -> list[Plan]:
    return [
        Plan("baseline", None, {}, 0.905, 0.04),
        Plan(
            "lr 0.001 + exponential decay",
            "learning rate",
            {"optimizer.learning_rate": 0.001, "schedule": {"name": "exponential_decay"}},
            0.962,
            0.02,
            significant=True,
            p_value=0.002,
        ),
        Plan(
            "no dropout",
            "model.dropout",
            {"model.dropout": 0.0},
            0.874,
            0.11,
            significant=True,
            p_value=0.01,
        ),
        Plan(
            "no horizontal flip",
            "augmentation.horizontal_flip",
            {"augmentation.horizontal_flip": False},
            0.913,
            0.04,
            p_value=0.21,
        ),
        Plan(
            XSS,
            "model.dense",
            {"model.dense": [64]},
            0.90,
            0.05,
            states=["succeeded", "failed", "running"],
        ),
        Plan(
            "sgd lr 2.0",
            "optimizer",
            {"optimizer": {"name": "sgd", "learning_rate": 2.0}},
            0.1,
            0.0,
            states=["diverged", "diverged", "failed"],
        ),
    ]


def _history(rng, plan: Plan, epochs: int, diverged: bool) -> list[EpochRecord]:
    records = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-epoch / 3)
        val = min(plan.test_accuracy * progress + rng.normal(0, 0.01), 1.0)
        train = min(val + plan.gap * progress + rng.normal(0, 0.005), 1.0)
        loss = float("nan") if diverged and epoch == epochs else 2.3 * (1 - train) + 0.05
        records.append(
            EpochRecord(
                epoch=epoch,
                loss=loss,
                accuracy=train,
                val_loss=2.3 * (1 - val) + 0.08,
                val_accuracy=val,
                learning_rate=0.005,
                epoch_seconds=0.8,
            )
        )
    return records


def _confusion(rng, accuracy: float, classes: int, per_class: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=int)
    for true in range(classes):
        right = int(rng.binomial(per_class, accuracy))
        matrix[true, true] = right
        wrong = rng.choice([c for c in range(classes) if c != true], size=per_class - right)
        for predicted in wrong:
            matrix[true, predicted] += 1
    return matrix.tolist()


def make_study_data(
    plans: list[Plan], classes: int = 10, epochs: int = 12, seed: int = 0
) -> StudyData:
    rng = np.random.default_rng(seed)
    class_names = [str(i) for i in range(classes)]
    variants = []
    for index, plan in enumerate(plans):
        runs = []
        for seed_index, state in enumerate(plan.states):
            run_id = f"r{index:02d}{seed_index}" + "a1b2c3d4e5f6"
            config = {**apply_overrides(BASE_CONFIG, plan.overrides), "seed": seed_index}
            done = epochs if state in ("succeeded", "diverged") else epochs // 2
            history = _history(rng, plan, done, state == "diverged")
            metrics = None
            if state == "succeeded":
                accuracy = float(np.clip(plan.test_accuracy + rng.normal(0, 0.008), 0, 1))
                test = TestMetrics(
                    accuracy=accuracy,
                    loss=2.3 * (1 - accuracy) + 0.1,
                    per_class_accuracy=[accuracy] * classes,
                    confusion_matrix=_confusion(rng, accuracy, classes, 18),
                    samples=18 * classes,
                )
                metrics = RunMetrics(
                    run_id=run_id,
                    seed=seed_index,
                    epochs_run=epochs,
                    stopped_early=False,
                    attempt=1,
                    resumed_from_epoch=None,
                    history=history,
                    test=test,
                    class_names=class_names,
                    timings={"fit_seconds": 9.5 + seed_index},
                    environment={},
                )
            error = "ValueError: out of memory,\nretry later" if state == "failed" else None
            status = RunStatus(
                run_id=run_id,
                state=state,
                attempt=1,
                epoch=done,
                epochs=epochs,
                error=error,
                history=history,
            )
            runs.append(
                RunRecord(
                    run_id=run_id,
                    seed=seed_index,
                    config=config,
                    state=state,
                    metrics=metrics,
                    status=status,
                )
            )
        variants.append(
            VariantRecord(name=plan.name, factor=plan.factor, overrides=plan.overrides, runs=runs)
        )
    return StudyData(study_id="st-0123456789ab", spec={"name": "seed-study"}, variants=variants)

"""Which comparisons are judged on balanced accuracy.

A variant that only reweights the loss per class or resamples the classes
(`training.class_weight`, `training.resample`) trades the majority classes' accuracy for the
minorities': on an imbalanced test split its plain accuracy can fall while the model stops
ignoring a class. Such a variant is compared with the baseline on balanced accuracy (the mean
of the per-class recalls); every other comparison stays on plain test accuracy.
"""

from __future__ import annotations

from typing import Any

from service.report.configs import changes, variant_config
from service.report.study_data import StudyData
from service.report.variant_models import JudgedMetric

BALANCE_PATHS = ("training.class_weight", "training.resample")


def judged_metric(baseline_config: dict[str, Any], config: dict[str, Any]) -> JudgedMetric:
    """balanced_accuracy when the config differs from the baseline's only in class weights or
    resampling, else test_accuracy."""
    changed = changes(baseline_config, config)
    balancing = changed and all(
        any(path == p or path.startswith(p + ".") for p in BALANCE_PATHS) for path in changed
    )
    return "balanced_accuracy" if balancing else "test_accuracy"


def judged_metrics(data: StudyData) -> list[JudgedMetric]:
    """The metric each variant of the study is compared with the baseline on (the baseline's
    own entry is test_accuracy)."""
    if not data.variants:
        return []
    base = variant_config(data, data.variants[0])
    return ["test_accuracy"] + [
        judged_metric(base, variant_config(data, variant)) for variant in data.variants[1:]
    ]


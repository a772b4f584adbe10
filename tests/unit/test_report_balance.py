"""Class weighting and resampling are judged on balanced accuracy (the mean per-class recall):
on an imbalanced test split a weighted variant can lose plain accuracy while the model stops
ignoring the minority classes. Everything else stays on plain test accuracy."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import balanced_accuracy_score

from service.lifecycle.documents import TestMetrics as SplitMetrics
from service.report.render import render_markdown
from service.report.stats import balanced_accuracy, balanced_samples
from service.report.summary import summarize_study
from service.report.terminal import answer, variants_table
from tests.planted_study import CLASSES, clean_facts, make_study

TEST_COUNTS = [500] + [20] * (CLASSES - 1)
"""An imbalanced test split: one majority class, nine small ones (680 images)."""
TRAIN_COUNTS = [2000] + [80] * (CLASSES - 1)


def _test(recalls: list[float]) -> SplitMetrics:
    """Test metrics of a model with these per-class recalls on TEST_COUNTS: a minority sample
    it gets wrong is called the majority class, a majority sample it gets wrong class 1."""
    matrix = np.zeros((CLASSES, CLASSES), dtype=int)
    for true, (count, recall) in enumerate(zip(TEST_COUNTS, recalls, strict=True)):
        right = int(round(float(np.clip(recall, 0, 1)) * count))
        matrix[true, true] = right
        matrix[true, 1 if true == 0 else 0] += count - right
    accuracy = float(np.trace(matrix) / matrix.sum())
    return SplitMetrics(
        accuracy=accuracy, loss=2.3 * (1 - accuracy), per_class_accuracy=list(np.diag(matrix) / TEST_COUNTS),
        confusion_matrix=matrix.tolist(), samples=int(matrix.sum()),
    )  # fmt: skip


def imbalanced_study(variants: dict[str, tuple[float, float, dict]], seeds: int = 5):
    """A study on the imbalanced split: each variant (majority recall, minority recall,
    overrides), every seed's recalls a little apart."""
    rng = np.random.default_rng(7)
    data = make_study(
        {name: {"overrides": overrides} for name, (_, _, overrides) in variants.items()},
        seeds=seeds,
        dataset=clean_facts(train_class_counts=TRAIN_COUNTS, train_size=sum(TRAIN_COUNTS)),
    )
    for record, (major, minor, _) in zip(data.variants, variants.values(), strict=True):
        for run in record.runs:
            recalls = [major] + [minor] * (CLASSES - 1)
            noisy = [r + 0.015 * rng.standard_normal() for r in recalls]
            run.metrics = run.metrics.model_copy(update={"test": _test(noisy)})
    return summarize_study(data, generated_at="")


WEIGHTED = {"training.class_weight": "balanced"}
RESAMPLED = {"training.resample": "oversample"}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_is_the_mean_per_class_recall_as_scikit_learn_computes_it():
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.integers(0, 4, size=300) ** 2 % 7  # uneven classes, some never present
        guess = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 7, size=300))
        matrix = np.zeros((7, 7), dtype=int)
        np.add.at(matrix, (truth, guess), 1)
        test = SplitMetrics(accuracy=0.0, loss=0.0, per_class_accuracy=[None] * 7,
                           confusion_matrix=matrix.tolist(), samples=300)  # fmt: skip
        assert balanced_accuracy(test) == pytest.approx(balanced_accuracy_score(truth, guess))


def test_a_small_class_makes_balanced_accuracy_noisier_than_plain_accuracy():
    balanced_split = _test([0.8] * CLASSES).model_copy(
        update={"confusion_matrix": (np.eye(CLASSES, dtype=int) * 68).tolist()}
    )
    assert balanced_samples(balanced_split) == 680  # equal classes: as noisy as plain accuracy
    assert balanced_samples(_test([0.8] * CLASSES)) < 300  # 20-image classes weigh a tenth each


def test_a_weighted_variant_that_loses_plain_accuracy_but_gains_balanced_accuracy_is_the_fix():
    summary = imbalanced_study(
        {
            "baseline": (0.99, 0.40, {}),
            "class weight balanced": (0.80, 0.75, WEIGHTED),
            "dropout 0.3": (0.99, 0.40, {"model.dropout": 0.3}),
        }
    )
    base, weighted, dropout = summary.variants
    assert weighted.test_accuracy.mean < base.test_accuracy.mean - 0.03  # plain accuracy falls
    comparison = weighted.vs_baseline
    assert comparison.metric == "balanced_accuracy" and comparison.significant
    assert comparison.delta == pytest.approx(weighted.balanced_accuracy.mean - base.balanced_accuracy.mean)
    assert comparison.delta > 0.25
    assert dropout.vs_baseline.metric == "test_accuracy"  # everything else stays on plain accuracy

    top = summary.causes[0]
    assert top.rule == "class_imbalance" and top.fix is not None
    assert top.fix.variant == "class weight balanced" and top.fix.metric == "balanced_accuracy"
    assert "raises balanced accuracy (mean per-class recall) by" in top.statement
    assert "plain test accuracy moves by -" in top.statement
    assert "of balanced accuracy" in top.title and "of balanced accuracy" in top.advice
    assert top.evidence["fix"]["metric"] == "balanced_accuracy"
    assert top.evidence["fix"]["test_accuracy_delta"] < 0
    assert summary.strengths == []  # the fall in plain accuracy is not read as a harm

    out = io.StringIO()
    console = Console(file=out, width=80)
    console.print(answer(summary))
    console.print(variants_table(summary))
    text = " ".join(out.getvalue().split())
    assert "fix measured +" in text and "points of balanced accuracy (95% CI" in text
    assert "Δ on balanced accuracy (mean per-class recall) for: class weight balanced" in text
    assert "Δ on balanced accuracy" in render_markdown(summary)


def test_a_resampled_variant_that_loses_plain_and_balanced_accuracy_is_not_a_fix():
    summary = imbalanced_study(
        {"baseline": (0.99, 0.40, {}), "oversample": (0.80, 0.30, RESAMPLED)}
    )
    resampled = summary.variants[1]
    assert resampled.vs_baseline.metric == "balanced_accuracy" and resampled.vs_baseline.delta < 0
    assert all(cause.fix is None or cause.fix.variant != "oversample" for cause in summary.causes)
    assert not any("oversample" in cause.variants for cause in summary.causes)
    hurts = [finding for finding in summary.strengths if "oversample" in finding.variants]
    assert hurts and "lowers balanced accuracy (mean per-class recall) by" in hurts[0].statement
    imbalance = next(s for s in summary.symptoms if s.rule == "class_imbalance")
    assert imbalance.evidence["balanced_accuracy"] == pytest.approx(
        summary.variants[0].balanced_accuracy.mean
    )
    assert "Balanced accuracy (mean per-class recall) is" in imbalance.statement

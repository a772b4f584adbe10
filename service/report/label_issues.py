"""The training samples most likely mislabelled: confident learning on out-of-fold predictions.

An out-of-fold run (`training.holdout: {folds: K, fold: i}`) trains without fold i of the
training split and stores its model's class probabilities for that fold (`held_out.json`).
When all K folds of one config are stored, every training sample has probabilities from a
model that never saw it; cleanlab's `find_label_issues` (confident learning: per-class
thresholds on those probabilities, pruned by the estimated noise rates) flags the samples whose
given label is likely wrong, ranked by self-confidence (the probability of the given label,
lowest first).

Out-of-fold runs are not variants: they train on less data and never change the config, so
`gather` keeps them apart (`StudyData.out_of_fold`) and no comparison, ranking or claim of the
report sees them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from service.holdout import HeldOutPredictions
from service.report.analysis_models import LabelIssue, LabelIssues
from service.report.study_data import RunRecord, StudyData, VariantRecord

HOLDOUT_PATH = "training.holdout"
LISTED = 20
"""Flagged samples the report lists, most likely mislabelled first."""
METHOD = (
    "cleanlab.filter.find_label_issues (confident learning, prune_by_noise_rate) on out-of-fold "
    "predicted probabilities, ranked by self-confidence"
)


def is_out_of_fold(variant: VariantRecord) -> bool:
    """A variant of out-of-fold runs: it holds a fold of the training split out."""
    return HOLDOUT_PATH in variant.overrides or any(_holdout(run) for run in variant.runs)


def _holdout(run: RunRecord) -> dict[str, Any] | None:
    return (run.config.get("training") or {}).get("holdout")


def _config_key(run: RunRecord) -> str:
    """The run's config without its holdout: the K folds of one config share it."""
    training = {k: v for k, v in (run.config.get("training") or {}).items() if k != "holdout"}
    return json.dumps({**run.config, "training": training}, sort_keys=True)


def label_issues(data: StudyData, listed: int = LISTED) -> LabelIssues | None:
    """The samples most likely mislabelled, from the complete set of out-of-fold runs of one
    config (the baseline's first); None when no config has every fold stored."""
    groups = _complete_groups(data)
    if not groups:
        return None
    baseline = _config_key(data.variants[0].runs[0]) if data.variants and data.variants[0].runs else None
    key = next((k for k in groups if k[0] == baseline), next(iter(groups)))
    documents = groups[key]
    folds = key[1]
    samples, names, labels, probabilities = merge_folds(documents)
    class_names = documents[0].class_names
    base = {
        "method": METHOD,
        "folds": folds,
        "runs": sorted(d.run_id for d in documents),
        "samples": len(samples),
    }
    try:
        ranked = _ranked_issues(labels, probabilities)
    except Exception as exc:  # cleanlab refuses some inputs (e.g. one class only): say so
        return LabelIssues(**base, flagged=0, top=[], note=f"cleanlab could not rank: {exc}")
    predicted = probabilities.argmax(axis=1)
    top = [
        LabelIssue(
            sample=int(samples[i]),
            name=names[i],
            given=class_names[labels[i]],
            predicted=class_names[predicted[i]],
            given_confidence=round(float(probabilities[i, labels[i]]), 4),
            predicted_confidence=round(float(probabilities[i, predicted[i]]), 4),
        )
        for i in ranked[:listed]
    ]
    return LabelIssues(**base, flagged=len(ranked), top=top)


def _complete_groups(data: StudyData) -> dict[tuple[str, int], list[HeldOutPredictions]]:
    """(config key, folds) -> the stored fold documents, for sets with every fold present."""
    found: dict[tuple[str, int], list[HeldOutPredictions]] = defaultdict(list)
    for variant in data.out_of_fold:
        for run in variant.runs:
            document = data.held_out.get(run.run_id)
            if document is not None:
                found[(_config_key(run), document.folds)].append(document)
    return {
        key: sorted(documents, key=lambda d: (d.fold, d.run_id))
        for key, documents in found.items()
        if {d.fold for d in documents} == set(range(key[1]))
    }


def merge_folds(
    documents: list[HeldOutPredictions],
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(sample indices, names, given labels, probabilities) over the union of the folds, by
    sample index; a sample predicted by several runs (seeds) gets their mean probabilities."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = defaultdict(int)
    names: dict[int, str] = {}
    labels: dict[int, int] = {}
    for document in documents:
        rows = np.asarray(document.probabilities, dtype=np.float64)
        for sample, name, label, row in zip(
            document.samples, document.names, document.labels, rows, strict=True
        ):
            sums[sample] = sums.get(sample, 0.0) + row
            counts[sample] += 1
            names[sample], labels[sample] = name, label
    order = np.array(sorted(sums), dtype=np.int64)
    probabilities = np.stack([sums[s] / counts[s] for s in order.tolist()])
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return (
        order,
        [names[s] for s in order.tolist()],
        np.array([labels[s] for s in order.tolist()], dtype=np.int64),
        probabilities,
    )


def _ranked_issues(labels: np.ndarray, probabilities: np.ndarray) -> list[int]:
    from cleanlab.filter import find_label_issues  # imported here: a second of import time

    ranked = find_label_issues(
        labels, probabilities, return_indices_ranked_by="self_confidence"
    )
    return [int(i) for i in ranked]

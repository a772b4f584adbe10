"""What the dataset itself shows (class counts, raw input range, train/test duplicates) and the
data-problem findings it supports.

The data is loaded exactly as the runs split it (same `split_seed`) but unscaled, so the range
is the one the `scale` option sees. keras.datasets classics are never downloaded for a report.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from service import datasets
from service.errors import DatasetError
from service.report.configs import variant_config
from service.report.models import DatasetFacts, Finding, StudyData

DOWNLOADED_KINDS = frozenset({"mnist", "fashion_mnist", "cifar10", "cifar100"})


def dataset_facts(dataset_spec) -> DatasetFacts | None:
    """Facts about the training and test splits of `dataset_spec`; None when the data is a
    keras.datasets classic or cannot be read."""
    if dataset_spec.kind in DOWNLOADED_KINDS:
        return None
    try:
        data = datasets.load(dataset_spec.model_copy(update={"scale": "none"}))
    except DatasetError:
        return None
    counts = np.bincount(data.y_train, minlength=len(data.class_names))
    x_train = data.x_train
    return DatasetFacts(
        class_names=list(data.class_names),
        train_class_counts=[int(c) for c in counts],
        train_size=len(data.y_train),
        test_size=len(data.y_test),
        raw_min=float(x_train.min()) if x_train.size else 0.0,
        raw_max=float(x_train.max()) if x_train.size else 0.0,
        scale=dataset_spec.scale,
        train_test_duplicates=shared_samples(x_train, data.x_test),
    )


def shared_samples(x_train: np.ndarray, x_test: np.ndarray) -> int:
    """How many test samples are byte-for-byte identical to some training sample."""
    train = {_digest(row) for row in _rows(x_train)}
    return sum(1 for row in _rows(x_test) if _digest(row) in train)


def _rows(x: np.ndarray) -> np.ndarray:
    # Identical pixels give identical bytes once the layout and dtype are fixed.
    return np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(row.tobytes(), digest_size=16).digest()


# Findings from the facts


IMBALANCE_RATIO = 3.0
"""Largest over smallest training class count from which the imbalance is reported."""
FEW_SAMPLES = 50
"""Training samples in the smallest class below which accuracy is called noisy."""
UNSCALED_MAX = 1.5
"""Raw inputs above this, fed with scale 'none', count as unscaled (e.g. 0..255 pixels)."""
UNSCALED_MAGNITUDE = 0.10


def data_findings(data: StudyData, baseline_config: dict[str, Any]) -> list[Finding]:
    """Data problems, ranked by their own severity; the runs behind them are those of every
    variant trained on the baseline's dataset section."""
    facts = data.dataset
    if facts is None:
        return []
    dataset = baseline_config.get("dataset")
    records = [v for v in data.variants if variant_config(data, v).get("dataset") == dataset]
    names = [v.name for v in records]
    run_ids = list(dict.fromkeys(run.run_id for v in records for run in v.runs))
    found = []
    for rule in (_class_imbalance, _few_samples, _unscaled_input, _train_test_leak):
        result = rule(facts)
        if result is not None:
            title, statement, evidence, magnitude = result
            found.append(
                Finding(
                    rule=rule.__name__.lstrip("_"),
                    title=title,
                    kind="data",
                    statement=statement,
                    evidence=evidence,
                    variants=names,
                    run_ids=run_ids,
                    magnitude=magnitude,
                )
            )
    return found


def _class_imbalance(facts: DatasetFacts):
    counts = facts.train_class_counts
    if len(counts) < 2:
        return None
    largest, smallest = max(counts), min(counts)
    ratio = largest / smallest if smallest else math.inf
    if ratio < IMBALANCE_RATIO:
        return None
    big, small = facts.class_names[counts.index(largest)], facts.class_names[counts.index(smallest)]
    statement = (
        f"The training classes are imbalanced: {big!r} has {largest} samples and {small!r} "
        f"{smallest} ({'no samples' if not smallest else f'{ratio:.1f}x fewer'}); overall accuracy "
        "hides the rare classes, so read the per-class accuracy too."
    )
    evidence = {
        "largest_class": big,
        "largest_count": largest,
        "smallest_class": small,
        "smallest_count": smallest,
        "ratio": ratio if smallest else None,
        "threshold": IMBALANCE_RATIO,
    }
    magnitude = min(0.10, 0.02 * math.log2(ratio)) if smallest else 0.10
    return (
        f"Class imbalance: {ratio:.1f}x"
        if smallest
        else f"Class {small!r} has no training samples",
        statement,
        evidence,
        magnitude,
    )


def _few_samples(facts: DatasetFacts):
    smallest = min(facts.train_class_counts, default=0)
    if smallest >= FEW_SAMPLES:
        return None
    name = facts.class_names[facts.train_class_counts.index(smallest)]
    statement = (
        f"The smallest class ({name!r}) has only {smallest} training samples (fewer than "
        f"{FEW_SAMPLES}): results vary more from seed to seed and test accuracy is noisy, so "
        "more seeds are needed to tell variants apart."
    )
    evidence = {
        "smallest_class": name,
        "smallest_count": smallest,
        "threshold": FEW_SAMPLES,
        "train_size": facts.train_size,
        "test_size": facts.test_size,
    }
    return (
        f"Few samples: {smallest} in the smallest class",
        statement,
        evidence,
        min(0.10, 0.01 * FEW_SAMPLES / max(1, smallest)),
    )


def _unscaled_input(facts: DatasetFacts):
    evidence = {"raw_min": facts.raw_min, "raw_max": facts.raw_max, "scale": facts.scale}
    if facts.scale == "none" and facts.raw_max > UNSCALED_MAX:
        statement = (
            f"Inputs reach the model unscaled: values run from {facts.raw_min:g} to {facts.raw_max:g} "
            "with dataset.scale 'none'; large inputs slow or destabilize training (use 'auto', "
            "'unit' or 'standardize')."
        )
        return (
            f"Unscaled input: values up to {facts.raw_max:g}",
            statement,
            evidence,
            UNSCALED_MAGNITUDE,
        )
    if facts.scale == "unit" and 0 < facts.raw_max <= 1.0:
        statement = (
            f"Inputs are scaled twice: they already lie in {facts.raw_min:g}..{facts.raw_max:g} and "
            "dataset.scale 'unit' divides them by 255 again, leaving almost no signal (use 'auto')."
        )
        return "Input divided by 255 twice", statement, evidence, UNSCALED_MAGNITUDE
    return None


def _train_test_leak(facts: DatasetFacts):
    shared = facts.train_test_duplicates
    if shared <= 0:
        return None
    share = shared / facts.test_size if facts.test_size else 1.0
    statement = (
        f"{shared} test samples ({share * 100:.1f}% of the test split) also appear in the training "
        "split; test accuracy is optimistic."
    )
    evidence = {"duplicates": shared, "test_size": facts.test_size, "share": share}
    return f"Train/test leak: {shared} shared samples", statement, evidence, share

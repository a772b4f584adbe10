"""What the dataset itself shows (class counts, raw input range, train/test duplicates) and the
data-problem findings it supports.

The data is loaded exactly as the runs split it (same `split_seed`) but unscaled, so the range
is the one the `scale` option sees. keras.datasets classics are never downloaded for a report.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from service import datasets
from service.datasets.options import DEFAULT_DATA_OPTIONS, DataOptions
from service.errors import DatasetError
from service.report.configs import variant_config
from service.report.diagnosis_models import Finding
from service.report.study_data import DatasetFacts, StudyData

DOWNLOADED_KINDS = frozenset({"mnist", "fashion_mnist", "cifar10", "cifar100"})


def dataset_facts(dataset_spec, options: DataOptions = DEFAULT_DATA_OPTIONS) -> DatasetFacts | None:
    """Facts about the training and test splits of `dataset_spec`, read as `options` allow;
    None when the data is a keras.datasets classic or cannot be read."""
    if dataset_spec.kind in DOWNLOADED_KINDS:
        return None
    try:
        data = datasets.load(dataset_spec.model_copy(update={"scale": "none"}), options=options)
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
        validation_size=len(data.y_val),
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


FEW_SAMPLES = 50
"""Training samples in the smallest class below which accuracy is called noisy."""


def data_findings(data: StudyData, baseline_config: dict[str, Any]) -> list[Finding]:
    """Facts of the data that are not causes of low accuracy but change how to read it (few
    samples per class, a train/test leak); imbalance and unscaled input are symptoms
    (`service.report.symptoms`), since whether they cost accuracy shows in the runs."""
    facts = data.dataset
    if facts is None:
        return []
    dataset = baseline_config.get("dataset")
    records = [v for v in data.variants if variant_config(data, v).get("dataset") == dataset]
    names = [v.name for v in records]
    run_ids = list(dict.fromkeys(run.run_id for v in records for run in v.runs))
    found = []
    for rule in (_few_samples, _train_test_leak):
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

"""Fixture studies with planted effects, for the reporter's statistics and diagnosis tests.

`make_study({"baseline": {...}, "lr x0.3": {...}})` builds a `StudyData` whose runs carry
generated metrics: each variant has a true mean test accuracy and a per-seed noise, a
validation-accuracy curve shape (plateau or still rising), a training-loss shape (smooth or
oscillating), a train-validation gap, and run states (succeeded, diverged, failed, ...). Configs
are real resolved `TrainConfig`s: the baseline's plus each variant's dotted-path overrides.
Everything is drawn from one numpy Generator, so a fixture is fixed by its `rng_seed`.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np

from service.lifecycle.documents import EpochRecord, RunMetrics, RunStatus, StudyDocument, TestMetrics, Variant
from service.lifecycle.storage import run_key, study_key, write_status
from service.report.configs import apply_overrides
from service.report.study_data import DatasetFacts, RunRecord, StudyData, VariantRecord
from service.spec.models import TrainConfig

BASE = {
    "dataset": {"kind": "digits", "validation_split": 0.1, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 16}, {"filters": 32}], "dense": [64]},
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "training": {"epochs": 10, "batch_size": 32},
}
CLASSES = 10
PER_CLASS = 36
"""Test samples per class (360 in all, like digits' test split)."""

DEFAULTS: dict[str, Any] = {
    "overrides": {},
    "factor": None,
    "test_accuracy": 0.90,
    "sd": 0.005,
    "gap": 0.02,
    "gap_sd": 0.003,
    "val_offset": 0.0,
    "curve": "plateau",
    "loss": "smooth",
    "states": None,
    "stopped_early": False,
    "epochs": None,
    "class_recall": None,
    "wrong_as": None,
}
"""A variant's parameters: `test_accuracy` (true mean) and `sd` (noise per seed); the final
validation accuracy is the seed's test accuracy plus `val_offset`, the final training accuracy
adds `gap` (noise `gap_sd`); `curve` 'plateau' or 'rising' (validation accuracy still climbing
at the last epoch); `loss` 'smooth' or 'oscillating'; `states` one per seed (default all
succeeded); `epochs` the epochs each succeeded seed ran (default the config's; a list sets it
per seed, as early stopping does); `class_recall` {class index: test recall} for classes the
model gets wrong more often (the other classes share the rest of the test accuracy), e.g. {3: 0.0}
for a class never predicted; `wrong_as` the class every wrong prediction goes to (default: the
next class)."""


def config(overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None) -> dict:
    """A resolved TrainConfig as JSON: `base` (default BASE) with dotted-path overrides."""
    data = apply_overrides(
        TrainConfig.model_validate(base or BASE).model_dump(mode="json"), overrides or {}
    )
    return TrainConfig.model_validate(data).model_dump(mode="json")


def clean_facts(**changes: Any) -> DatasetFacts:
    """Facts of a healthy dataset (balanced, scaled, no leak), with `changes` applied."""
    facts = {
        "class_names": [str(c) for c in range(CLASSES)],
        "train_class_counts": [130] * CLASSES,
        "train_size": 130 * CLASSES,
        "test_size": PER_CLASS * CLASSES,
        "raw_min": 0.0,
        "raw_max": 16.0,
        "scale": "auto",
        "train_test_duplicates": 0,
        "validation_size": 144,
    }
    facts.update(changes)
    return DatasetFacts(**facts)


def make_study(
    variants: dict[str, dict[str, Any]],
    seeds: int = 5,
    rng_seed: int = 0,
    base: dict[str, Any] | None = None,
    dataset: DatasetFacts | None = None,
    study_id: str = "st-planted000",
) -> StudyData:
    """A study whose first variant is the baseline; see DEFAULTS for each variant's keys."""
    rng = np.random.default_rng(rng_seed)
    records = []
    for index, (name, params) in enumerate(variants.items()):
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise KeyError(f"unknown variant parameters {sorted(unknown)}")
        p = {**DEFAULTS, **params}
        run_config = config(p["overrides"], base)
        states = p["states"] or ["succeeded"] * seeds
        runs = [
            _run(rng, f"{study_id}/{index}/{seed}", seed, run_config, p, state)
            for seed, state in enumerate(states)
        ]
        records.append(
            VariantRecord(name=name, factor=p["factor"], overrides=p["overrides"], runs=runs)
        )
    spec = {**config(base=base), "name": "planted", "ablation": {"seeds": seeds}}
    return StudyData(study_id=study_id, spec=spec, variants=records, dataset=dataset)


def _run(rng, key: str, seed: int, run_config: dict, p: dict, state: str) -> RunRecord:
    run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    epochs = p["epochs"] if p["epochs"] is not None else run_config["training"]["epochs"]
    if isinstance(epochs, list):
        epochs = epochs[seed]
    test = float(np.clip(p["test_accuracy"] + p["sd"] * rng.standard_normal(), 0.0, 1.0))
    val = float(np.clip(test + p["val_offset"] + 0.002 * rng.standard_normal(), 0.0, 1.0))
    train = float(np.clip(val + p["gap"] + p["gap_sd"] * rng.standard_normal(), 0.0, 1.0))
    rate = run_config["optimizer"]["learning_rate"]
    history = _history(rng, epochs, train, val, p["curve"], p["loss"], rate)
    if state == "succeeded":
        metrics = RunMetrics(
            run_id=run_id, seed=seed, epochs_run=epochs, stopped_early=p["stopped_early"],
            attempt=1, resumed_from_epoch=None, history=history, test=_test(test, p["class_recall"], p["wrong_as"]),
            class_names=[str(c) for c in range(CLASSES)], timings={"fit_seconds": 3.0},
            environment={}, finished_at=f"2024-05-01T12:00:{seed:02d}.000+00:00",
        )  # fmt: skip
        status = RunStatus(
            run_id=run_id, state="succeeded", epoch=epochs, epochs=epochs, history=history
        )
        return RunRecord(run_id, seed, run_config, state, metrics, status)
    if state == "diverged":
        cut = max(2, epochs // 2)
        partial = history[: cut - 1] + [
            history[cut - 1].model_copy(update={"loss": None, "accuracy": None})
        ]
        status = RunStatus(
            run_id=run_id,
            state="diverged",
            epoch=cut,
            epochs=epochs,
            diverged_epoch=cut,
            history=partial,
        )
        return RunRecord(run_id, seed, run_config, state, None, status)
    error = "RuntimeError: worker lost\nTraceback ..." if state == "failed" else None
    status = RunStatus(
        run_id=run_id,
        state=state,
        epoch=epochs // 2,
        epochs=epochs,
        error=error,
        history=history[: epochs // 2],
    )
    return RunRecord(run_id, seed, run_config, state, None, status)


def _history(
    rng, epochs: int, train: float, val: float, curve: str, loss: str, rate: float
) -> list[EpochRecord]:
    start = 1.0 / CLASSES
    e = np.arange(1, epochs + 1, dtype=float)
    if curve == "rising":
        shape = e / epochs
    elif curve == "plateau":
        shape = (1 - np.exp(-6 * e / epochs)) / (1 - np.exp(-6))
    else:
        raise ValueError(f"unknown curve {curve!r}")
    train_acc = start + (train - start) * shape
    val_acc = start + (val - start) * shape + 0.002 * rng.standard_normal(epochs)
    val_acc[-1] = val
    train_loss = 2.3 * (1 - train_acc) + 0.05
    if loss == "oscillating":
        train_loss = train_loss * (1 + 0.5 * (e % 2 == 0))
    elif loss != "smooth":
        raise ValueError(f"unknown loss {loss!r}")
    return [
        EpochRecord(
            epoch=int(epoch),
            loss=float(tl),
            accuracy=float(ta),
            val_loss=float(2.3 * (1 - va) + 0.1),
            val_accuracy=float(va),
            learning_rate=rate,
            epoch_seconds=0.3,
        )  # fmt: skip
        for epoch, tl, ta, va in zip(e, train_loss, train_acc, val_acc, strict=True)
    ]


def _test(
    accuracy: float, class_recall: dict[int, float] | None = None, wrong_as: int | None = None
) -> TestMetrics:
    recall = dict(class_recall or {})
    rest = (accuracy * CLASSES - sum(recall.values())) / max(1, CLASSES - len(recall))
    matrix = np.zeros((CLASSES, CLASSES), dtype=int)
    for true in range(CLASSES):
        right = int(round(float(np.clip(recall.get(true, rest), 0.0, 1.0)) * PER_CLASS))
        matrix[true, true] = right
        wrong = (true + 1) % CLASSES if wrong_as is None or wrong_as == true else wrong_as
        matrix[true, wrong] += PER_CLASS - right
    per_class = [float(matrix[k, k] / PER_CLASS) for k in range(CLASSES)]
    return TestMetrics(
        accuracy=accuracy, loss=2.3 * (1 - accuracy) + 0.1, per_class_accuracy=per_class,
        confusion_matrix=matrix.tolist(), samples=PER_CLASS * CLASSES,
    )  # fmt: skip


def make_grid(
    factors: list[dict[str, Any]],
    mean: Any,
    seeds: int = 4,
    sd: float = 0.005,
    states: dict[tuple[int, ...], list[str]] | None = None,
    baseline_mean: float | None = None,
    rng_seed: int = 0,
    base: dict[str, Any] | None = None,
    dataset: DatasetFacts | None = None,
) -> StudyData:
    """A `grid` study as the planner expands it: the baseline, then one variant per combination
    of the factors' levels (factor 'grid'). `factors` are spec factors ({"path", "values"} or
    {"name", "values": [mappings]}); `mean(levels)` is a cell's true test accuracy from its level
    indices; `states` sets the run states of some cells. The cell equal to the baseline shares
    the baseline's runs, as identical runs do in a real plan; without one the baseline's mean is
    `baseline_mean`."""
    base_config = config(base=base)
    grid = [
        [{f["path"]: value} if "path" in f else dict(value) for value in f["values"]]
        for f in factors
    ]
    baseline = {"test_accuracy": baseline_mean or 0.9, "sd": sd}
    variants: dict[str, dict[str, Any]] = {"baseline": baseline}
    baseline_cell = None
    for combo in itertools.product(*(range(len(levels)) for levels in grid)):
        overrides: dict[str, Any] = {}
        names = []
        for index, level in enumerate(combo):
            overrides.update(grid[index][level])
            labels = factors[index].get("labels")
            names.append(
                labels[level]
                if labels
                else ", ".join(f"{p}={v}" for p, v in grid[index][level].items())
            )
        name = ", ".join(names)
        variants[name] = {
            "overrides": overrides, "factor": "grid", "test_accuracy": mean(combo), "sd": sd,
            "states": (states or {}).get(combo),
        }  # fmt: skip
        if config(overrides, base) == base_config:
            baseline_cell = name
    data = make_study(variants, seeds=seeds, rng_seed=rng_seed, base=base, dataset=dataset)
    spec_factors = [{k: v for k, v in f.items()} for f in factors]
    data.spec["ablation"] = {"strategy": "grid", "factors": spec_factors, "seeds": seeds}
    if baseline_cell is not None:
        data.variants[0].runs = next(v for v in data.variants if v.name == baseline_cell).runs
    return data


def write_to_store(data: StudyData, store: Any) -> StudyDocument:
    """Write the study into `store` as the planner and the workers do (study.json, each run's
    run.json, status.json and, when it succeeded, metrics.json); returns its study.json."""
    runs = {run.run_id: run for variant in data.variants for run in variant.runs}
    for run in runs.values():
        store.put_json(
            run_key(run.run_id, "run.json"),
            {"run_id": run.run_id, "schema_version": 1, "config": run.config,
             "dataset_fingerprint": "0" * 16, "seed": run.seed},
        )  # fmt: skip
        write_status(store, run.status)
        if run.metrics is not None:
            store.put_json(run_key(run.run_id, "metrics.json"), run.metrics.model_dump(mode="json"))
    document = StudyDocument(
        study_id=data.study_id,
        spec=data.spec,
        variants=[
            Variant(
                name=v.name,
                factor=v.factor,
                overrides=v.overrides,
                run_ids=[r.run_id for r in v.runs],
            )
            for v in data.variants
        ],
        run_ids=sorted(runs),
    )
    store.put_json(study_key(data.study_id, "study.json"), document.model_dump(mode="json"))
    return document

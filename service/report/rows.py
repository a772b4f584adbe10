"""One row per variant and run: the schema that `runs.csv` and `Study.results()` share.

A row holds the run's identity and state, its results (test metrics, the last epoch's training
and validation metrics, the best validation epoch, timings) and the config paths that differ
across the study's runs, as `config.<dotted.path>` columns (a config value that every run
shares says nothing about the results, and would bury the ones that do). Every row has every
column, in the same order; a missing value is None (an empty CSV cell, NaN in pandas).
"""

from __future__ import annotations

import json
from typing import Any

from service.lifecycle.documents import StudyDocument
from service.report.configs import flatten
from service.report.study_data import RunRecord, StudyData
from service.store.base import Store

RUN_COLUMNS = [
    "study_id", "variant", "factor", "run_id", "state", "seed", "test_accuracy", "test_loss",
    "epochs", "train_accuracy", "val_accuracy", "train_loss", "val_loss", "best_val_accuracy",
    "best_epoch", "fit_seconds", "error",
]  # fmt: skip
CONFIG_PREFIX = "config."


def run_rows(store: Store, study_document: StudyDocument | dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a study (its `study.json`, as a document or its JSON), read from the store."""
    from service.report import gather_document

    return rows_of(gather_document(store, study_document, with_facts=False))


def rows_of(data: StudyData) -> list[dict[str, Any]]:
    """The rows of an already gathered study (what the reporter writes as runs.csv)."""
    rows = []
    configs = []
    for variant in data.variants:
        for run in variant.runs:
            row: dict[str, Any] = {
                "study_id": data.study_id,
                "variant": variant.name,
                "factor": variant.factor,
            }
            row.update(_results(run))
            rows.append(row)
            configs.append({CONFIG_PREFIX + k: _cell(v) for k, v in flatten(run.config).items()})
    varying = config_columns(configs)
    return [
        {**row, **{column: config.get(column) for column in varying}}
        for row, config in zip(rows, configs, strict=True)
    ]


def config_columns(configs: list[dict[str, Any]]) -> list[str]:
    """The config columns whose value differs across runs (a path one run lacks differs), sorted."""
    columns = sorted({key for config in configs for key in config})
    return [c for c in columns if len({json.dumps(cfg.get(c)) for cfg in configs}) > 1]


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """The header for `rows` (the fixed columns alone when there is no row)."""
    return list(rows[0]) if rows else list(RUN_COLUMNS)


def _results(run: RunRecord) -> dict[str, Any]:
    # A succeeded run has metrics; a diverged, failed or running one may still have a history.
    metrics, status = run.metrics, run.status
    history = metrics.history if metrics is not None else (status.history if status else [])
    last = history[-1] if history else None
    validated = [epoch for epoch in history if epoch.val_accuracy is not None]
    best = max(validated, key=lambda epoch: epoch.val_accuracy, default=None)
    epochs = metrics.epochs_run if metrics else (status.epoch if status else 0)
    return {
        "run_id": run.run_id,
        "state": str(getattr(run.state, "value", run.state)),
        "seed": run.seed if run.seed >= 0 else None,
        "test_accuracy": metrics.test.accuracy if metrics else None,
        "test_loss": metrics.test.loss if metrics else None,
        "epochs": epochs,
        "train_accuracy": last.accuracy if last else None,
        "val_accuracy": last.val_accuracy if last else None,
        "train_loss": last.loss if last else None,
        "val_loss": last.val_loss if last else None,
        "best_val_accuracy": best.val_accuracy if best else None,
        "best_epoch": best.epoch if best else None,
        "fit_seconds": metrics.timings.get("fit_seconds") if metrics else None,
        "error": status.error if status is not None and status.error else None,
    }


def _cell(value: Any) -> Any:
    """A config value as one cell: a list or mapping as its JSON, scalars as they are."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value

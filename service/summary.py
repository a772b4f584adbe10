"""The first summary of a study: per variant, seeds, mean ± std test accuracy and the change
versus the baseline. (The full report, with intervals and a diagnosis, is the reporter's.)"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from service.lifecycle import read_metrics, read_status
from service.plan import BASELINE, Plan
from service.store.base import Store


@dataclass(frozen=True)
class VariantSummary:
    name: str
    seeds: int
    succeeded: int
    diverged: int
    failed: int
    mean_accuracy: float | None
    std_accuracy: float | None
    delta: float | None
    """Mean test accuracy minus the baseline's (None for the baseline itself)."""


def summarize(plan: Plan, store: Store) -> list[VariantSummary]:
    return summarize_document(plan.study_document(), store)


def summarize_document(document: dict, store: Store) -> list[VariantSummary]:
    """Summaries of the variants of a `study.json` document."""
    accuracies: dict[str, float] = {}
    states: dict[str, str] = {}
    for run_id in document["run_ids"]:
        metrics = read_metrics(store, run_id)
        if metrics is not None:
            accuracies[run_id] = metrics.test.accuracy
            states[run_id] = "succeeded"
        else:
            status = read_status(store, run_id)
            states[run_id] = status.state if status else "missing"

    rows = []
    baseline_mean: float | None = None
    for variant in document["variants"]:
        run_ids = variant["run_ids"]
        values = [accuracies[run_id] for run_id in run_ids if run_id in accuracies]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        if variant["name"] == BASELINE:
            baseline_mean = mean
        counted = [states[run_id] for run_id in run_ids]
        rows.append(
            VariantSummary(
                name=variant["name"],
                seeds=len(run_ids),
                succeeded=counted.count("succeeded"),
                diverged=counted.count("diverged"),
                failed=len(counted) - counted.count("succeeded") - counted.count("diverged"),
                mean_accuracy=mean,
                std_accuracy=std,
                delta=None,
            )
        )
    return [
        row
        if row.name == BASELINE or row.mean_accuracy is None or baseline_mean is None
        else VariantSummary(**{**row.__dict__, "delta": row.mean_accuracy - baseline_mean})
        for row in rows
    ]


def summary_table(rows: list[VariantSummary], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    table.add_column("seeds", justify="right")
    table.add_column("test acc. mean ± std", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_column("notes")
    for row in rows:
        accuracy = (
            f"{row.mean_accuracy:.4f} ± {row.std_accuracy:.4f}" if row.mean_accuracy is not None else "—"
        )
        # uncoloured: significance is the report's to judge (ablate report)
        delta = f"{row.delta:+.4f}" if row.delta is not None else ("" if row.name == BASELINE else "—")
        notes = []
        if row.diverged:
            notes.append(f"{row.diverged} diverged")
        if row.failed:
            notes.append(f"{row.failed} not finished")
        seeds = str(row.seeds) if row.succeeded == row.seeds else f"{row.succeeded}/{row.seeds}"
        table.add_row(escape(row.name), seeds, accuracy, delta, ", ".join(notes))
    return table

"""The report's text files: report.md from a `Summary`, runs.csv from a `StudyData`.

index.html is rendered by `service.report.page` and re-exported here, so that the report has one
module to import its renderers from.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from service.report.formatting import (
    INTERVAL_OF,
    PLOT_CAPTIONS,
    VARIANT_COLUMNS,
    VariantRow,
    partial_message,
    plot_names,
    variant_rows,
)
from service.report.models import RunRecord, StudyData, Summary
from service.report.page import render_html
from service.report.sections import Section, sections

__all__ = ["render_html", "render_markdown", "runs_csv"]


# report.md


def _md(text: Any) -> str:
    """Text made safe inside a Markdown line or table cell: no HTML tag or entity, no cell break.

    Only a `<` that could open a tag (and an `&` that could start an entity) is escaped, so that
    "<0.001" stays readable in the raw file.
    """
    value = re.sub(r"&(?=#?\w+;)", "&amp;", str(text))
    value = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", value)
    return value.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_markdown(summary: Summary) -> str:
    lines = [f"# Ablation report: {_md(summary.name)}", ""]
    if summary.partial:
        lines += [f"> **Warning:** {_md(partial_message(summary))}", ""]
    lines += [
        f"Study `{_md(summary.study_id)}`, generated {_md(summary.generated_at or '–')}. "
        f"Baseline: **{_md(summary.baseline)}**. Metric: {_md(summary.metric)}, alpha {summary.alpha}.",
        "",
    ]
    for section in sections(summary):
        lines += _md_section(section)
    lines += ["## Variants", ""]
    lines.append("| " + " | ".join(title for _, title in VARIANT_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(VARIANT_COLUMNS) - 2) + ["---"]) + "|")
    for row in variant_rows(summary):
        cells = [_md(_with_interval(row, key)) for key, _ in VARIANT_COLUMNS]
        if row.is_baseline:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test accuracy is mean ± std across seeds, in percent; Δ in percentage points; p from Welch's t-test adjusted with Benjamini-Hochberg over the study's comparisons (significance is judged on it); g is Hedges' g.",
        "",
    ]
    lines += ["## Plots", ""]
    for name in plot_names(summary):
        title, caption = PLOT_CAPTIONS[name]
        lines += [f"### {title}", "", f"![{title}](plots/{name})", "", caption, ""]
    if summary.notes:
        lines += ["## Notes", ""] + [f"- {_md(note)}" for note in summary.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _md_section(section: Section) -> list[str]:
    lines = [f"## {_md(section.title)}", ""]
    if section.intro:
        lines += [_md(section.intro), ""]
    if not section.items and section.empty:
        lines += [_md(section.empty), ""]
    for rank, item in enumerate(section.items, 1):
        bullet = f"{rank}." if section.ordered else "-"
        badge = f" ({item.badge})" if item.badge else ""
        text = f" — {_md(item.text)}" if item.text else ""
        lines.append(f"{bullet} **{_md(item.title)}**{badge}{text}")
        for caption, text in item.code:
            if text:
                lines += ["", f"   {_md(caption)}:"] if caption else []
                lines += ["", "   ```yaml"]
                lines += [f"   {line}" for line in text.splitlines()] + ["   ```", ""]
        if item.rows:
            lines.append("   " + "; ".join(f"{_md(k)}: {_md(v)}" for k, v in item.rows))
    return lines + [""]


def _with_interval(row: VariantRow, key: str) -> str:
    value = getattr(row, key)
    interval = getattr(row, INTERVAL_OF[key]) if key in INTERVAL_OF else "–"
    return value if interval == "–" else f"{value} {interval}"


# runs.csv

RUN_COLUMNS = [
    "study_id", "variant", "factor", "run_id", "seed", "state", "test_accuracy", "test_loss",
    "epochs_run", "final_train_accuracy", "final_val_accuracy", "final_train_loss",
    "final_val_loss", "best_val_accuracy", "best_epoch", "fit_seconds", "error",
]  # fmt: skip


def runs_csv(data: StudyData) -> str:
    """One row per run: its results, then its config flattened to `config.<dotted.path>`."""
    rows = []
    for variant in data.variants:
        for run in variant.runs:
            row = {
                "study_id": data.study_id,
                "variant": variant.name,
                "factor": variant.factor or "",
            }
            row.update(_run_results(run))
            row.update({f"config.{key}": value for key, value in _flatten(run.config).items()})
            rows.append(row)
    config_columns = sorted({key for row in rows for key in row if key.startswith("config.")})
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=RUN_COLUMNS + config_columns, restval="", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _run_results(run: RunRecord) -> dict[str, Any]:
    # A succeeded run has metrics; a diverged, failed or running one may still have a history.
    metrics, status = run.metrics, run.status
    history = (
        metrics.history if metrics is not None else (status.history if status is not None else [])
    )
    last = history[-1] if history else None
    validated = [epoch for epoch in history if epoch.val_accuracy is not None]
    best = max(validated, key=lambda epoch: epoch.val_accuracy, default=None)
    return {
        "run_id": run.run_id,
        "seed": run.seed,
        "state": run.state,
        "test_accuracy": _cell(metrics.test.accuracy if metrics else None),
        "test_loss": _cell(metrics.test.loss if metrics else None),
        "epochs_run": metrics.epochs_run if metrics else (status.epoch if status else ""),
        "final_train_accuracy": _cell(last.accuracy if last else None),
        "final_val_accuracy": _cell(last.val_accuracy if last else None),
        "final_train_loss": _cell(last.loss if last else None),
        "final_val_loss": _cell(last.val_loss if last else None),
        "best_val_accuracy": _cell(best.val_accuracy if best else None),
        "best_epoch": best.epoch if best else "",
        "fit_seconds": _cell(metrics.timings.get("fit_seconds") if metrics else None),
        "error": (status.error or "") if status is not None else "",
    }


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{path}."))
        elif isinstance(value, (list, dict)):
            flat[path] = json.dumps(value, sort_keys=True)
        elif value is None:
            flat[path] = ""
        else:
            flat[path] = value
    return flat

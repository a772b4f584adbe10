"""The report's text files: report.md from a `Summary`, runs.csv from a `StudyData`.

index.html is rendered by `service.report.page` and re-exported here, so that the report has one
module to import its renderers from.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from service.report.cards import Section
from service.report.formatting import (
    INTERVAL_OF,
    PLOT_CAPTIONS,
    VARIANT_COLUMNS,
    VariantRow,
    partial_message,
    plot_names,
    variant_rows,
)
from service.report.labels import legend
from service.report.models import Summary
from service.report.page import render_html
from service.report.rows import columns_of, rows_of
from service.report.sections import sections
from service.report.study_data import StudyData

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
        "Test accuracy is mean ± std across seeds, in percent; Δ in percentage points; p from "
        "Welch's t-test adjusted with Benjamini-Hochberg over the study's comparisons "
        "(significance is judged on it); g is Hedges' g.",
        "",
    ]
    if legend(summary):
        lines += ["## Variant labels", "", "| Label | Variant |", "|---|---|"]
        lines += [f"| {_md(short)} | {_md(name)} |" for short, name in legend(summary)] + [""]
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


def runs_csv(data: StudyData) -> str:
    """One row per variant and run (`rows.rows_of`, the schema `Study.results()` shares)."""
    rows = rows_of(data)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_of(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()

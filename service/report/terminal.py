"""The report's answer in the terminal: the variants with their comparisons, the top causes
with their fixes, and the next steps, in the report's units (percent and points).

Colours follow significance, not sign: a difference the seeds cannot settle stays uncoloured
whichever way it points.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from service.lifecycle.documents import StudyDocument
from service.report import gather_document
from service.report.formatting import cause_amounts, interval, mean_std, p_value, pct, points
from service.report.labels import short_labels
from service.report.learning_curve import beside
from service.report.models import Summary
from service.report.summary import variant_summaries
from service.report.variant_models import VariantStats
from service.store.base import Store

TOP_CAUSES = 3


def variants_table(summary: Summary) -> Table | Group:
    """The report's variants: seeds, test accuracy, the difference from the baseline."""
    return stats_table(summary.variants, f"study {summary.study_id}", summary.labels)


def results_table(store: Store, study_document: StudyDocument | dict[str, Any]) -> Table | Group:
    """The same table for a study read from the store, before (or without) a report: the
    statistics are the report's (`summary.variant_summaries`), so the two never disagree."""
    data = gather_document(store, study_document, with_facts=False)
    stats = variant_summaries(data)
    names = [variant.name for variant in data.variants]
    labels = short_labels(names, names[0] if names else "")
    return stats_table(stats, f"study {data.study_id}", labels)


def stats_table(
    variants: list[VariantStats], title: str, labels: dict[str, str] | None = None
) -> Table | Group:
    """Variants in 80 columns, in percent and points; long names as V1, V2 ... with a legend."""
    labels = labels or {}
    table = Table(title=escape(title), title_justify="left")
    table.add_column("variant", overflow="fold", max_width=28)
    table.add_column("seeds", justify="right")
    table.add_column("test acc. (%)", justify="right")
    table.add_column("Δ vs baseline [95% CI]", justify="right")
    table.add_column("p (BH)", justify="right")
    for variant in variants:
        comparison = variant.vs_baseline
        delta, p = "", ""
        if comparison is not None:
            bounds = interval(comparison.ci_low, comparison.ci_high, signed=True)
            delta = f"{points(comparison.delta)} {bounds}"
            p = p_value(comparison.p_adjusted)
            if comparison.significant:
                colour = "green" if comparison.delta > 0 else "red"
                delta = f"[{colour}]{escape(delta)}[/]"
            else:
                delta = escape(delta)
        seeds = f"{variant.succeeded}/{variant.seeds}"
        name = labels.get(variant.name, variant.name)
        table.add_row(escape(name), seeds, mean_std(variant.test_accuracy), delta, p)
    balanced = [
        labels.get(v.name, v.name)
        for v in variants
        if v.vs_baseline is not None and v.vs_baseline.metric == "balanced_accuracy"
    ]
    note = (
        [Text(f"Δ on balanced accuracy (mean per-class recall) for: {', '.join(balanced)}")]
        if balanced
        else []
    )
    legend = [(short, name) for name, short in labels.items() if short != name]
    if not legend:
        return Group(table, *note) if note else table
    key = Table(box=None, show_header=False, pad_edge=False)
    key.add_column(style="bold", no_wrap=True)
    key.add_column(overflow="fold", max_width=72)
    for short, name in legend:
        key.add_row(escape(short), escape(name))
    return Group(table, *note, key)


def answer(summary: Summary) -> Group:
    """The verdict, the top causes with their fixes, and what to do next."""
    parts: list = [Text.from_markup(f"[bold]Answer:[/] {escape(summary.verdict)}")]
    curve, read = summary.learning_curve, False
    for rank, cause in enumerate(summary.causes[:TOP_CAUSES], 1):
        measured, missing = cause_amounts(cause)
        parts.append(Text.from_markup(f"  {rank}. [bold]{escape(cause.title)}[/]"))
        # Two numbers, never confused: what the fix measured, what the symptom says is missing.
        amounts = [f"[green]fix measured {escape(measured)}[/]"] if measured else []
        amounts += [f"[yellow]{escape(missing)} missing by the symptom[/]"] if missing else []
        parts.append(Text.from_markup("     " + "; ".join(amounts)))
        if measured:
            parts.append(Text.from_markup(f"     fix: {escape(_dotted(cause.fix.changes))}"))
        elif cause.advice:
            parts.append(Text.from_markup(f"     {escape(cause.advice)}"))
        if curve is not None and beside(cause):
            parts.append(Text(f"     learning curve: {curve.statement}"))
            read = True
    if len(summary.causes) > TOP_CAUSES:
        parts.append(Text(f"  ... and {len(summary.causes) - TOP_CAUSES} more in the report"))
    if curve is not None and not read:
        parts.append(Text(f"  learning curve: {curve.statement}"))
    if summary.label_issues is not None:
        parts += _label_issue_lines(summary)
    factorial = summary.factorial
    if factorial is not None and factorial.model != "none":
        ranked = sorted(factorial.factors, key=lambda f: -(f.eta_squared or 0.0))
        shares = "; ".join(
            f"{f.factor} {pct(f.eta_squared)} (ANOVA p {p_value(f.p_value)})" for f in ranked[:3]
        )
        parts.append(Text(f"  grid, variance explained: {shares}"))
    if summary.statistics.underpowered:
        parts.append(Text(f"  note: {summary.statistics.statement.split('. ', 1)[-1]}"))
    if summary.next_steps.next_study:
        parts.append(
            Text(f"  next: {summary.next_steps.next_study} beside the report {summary.next_steps.next_study_reason}")
        )
    return Group(*parts)


LISTED_LABEL_ISSUES = 5
"""Mislabelled samples named in the terminal; the report lists more."""


def _label_issue_lines(summary: Summary) -> list[Text]:
    found = summary.label_issues
    lines = [
        Text(
            f"  labels: cleanlab flags {found.flagged} of {found.samples} training samples as "
            f"likely mislabelled ({found.folds} out-of-fold runs)"
            + (f"; the {len(found.top)} likeliest are in the report" if found.top else "")
        )
    ]
    for issue in found.top[:LISTED_LABEL_ISSUES]:
        lines.append(
            Text(
                f"     {issue.name}: labelled {issue.given}, predicted {issue.predicted} "
                f"(confidence in the label {pct(issue.given_confidence)})"
            )
        )
    return lines


def _dotted(changes: dict) -> str:
    """`optimizer.learning_rate: 0.001, model.dropout: 0.5`, cut to one line."""
    text = ", ".join(f"{path}: {json.dumps(value, separators=(',', ':'))}" for path, value in changes.items())
    return text if len(text) <= 70 else text[:69] + "…"

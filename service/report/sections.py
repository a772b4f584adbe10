"""The report's diagnosis as sections of plain text, rendered alike by report.md and index.html.

The answer comes first (the verdict and how significance was judged), then the causes with
their fixes, the baseline's symptoms, what the baseline already gets right, what the study
cannot tell, and the next steps. Escaping is the renderer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.report.formatting import number, pct, points
from service.report.models import Cause, Summary


@dataclass
class Item:
    title: str
    text: str = ""
    badge: str = ""
    """'fix', 'symptom', 'hurts', 'data' ...: the card's colour."""
    code: list[tuple[str, str]] = field(default_factory=list)
    """(caption, YAML) blocks to paste into a spec."""
    rows: list[tuple[str, str]] = field(default_factory=list)
    """Evidence as (name, value) pairs."""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    items: list[Item] = field(default_factory=list)
    empty: str = ""
    ordered: bool = False


def sections(summary: Summary) -> list[Section]:
    return [
        Section("answer", "The answer", intro=_sentence(summary.verdict) + " " + summary.statistics.statement),
        _causes(summary),
        _symptoms(summary),
        _strengths(summary),
        _inconclusive(summary),
        _next_steps(summary),
    ]


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _causes(summary: Summary) -> Section:
    return Section(
        "causes",
        "What is causing low accuracy",
        items=[_cause(cause) for cause in summary.causes],
        empty=(
            "Nothing to fix found: no change tested helps by at least a point of test accuracy "
            "and the baseline's runs show no symptom of a problem."
        ),
        ordered=True,
    )


def _cause(cause: Cause) -> Item:
    code = []
    if cause.fix is not None:
        code.append((f"The fix, measured ({cause.fix.variant})", cause.fix.spec))
    code += [
        ("To try (untested; alternatives)" if index == 0 else "", fix.spec)
        for index, fix in enumerate(cause.try_next)
    ]
    rows = []
    if cause.fix is not None:
        rows.append(("gain, measured", points(cause.fix.delta or 0.0)))
    if cause.fix is None or cause.gain > (cause.fix.delta or 0.0):
        rows.append(("accuracy at stake", points(cause.gain)))
    if cause.fix is not None and cause.fix.ci_low is not None:
        rows.append(("95% CI", f"{points(cause.fix.ci_low)} to {points(cause.fix.ci_high)}"))
        rows.append(("p (BH-adjusted)", number(cause.fix.p_adjusted)))
    return Item(
        title=cause.title,
        text=f"{cause.statement} What to do: {cause.advice}",
        badge={"fix": "fix", "symptom": "symptom", "fix and symptom": "fix"}[cause.basis],
        code=code,
        rows=rows,
    )


def _scalar_rows(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in evidence.items():
        name = key.replace("_", " ")
        if isinstance(value, dict):
            value = ", ".join(
                f"{k}: {pct(v) if isinstance(v, float) and 0 <= v <= 1 else number(v)}"
                for k, v in value.items()
            )
            rows.append((name, value))
        elif isinstance(value, float) and ("accuracy" in key or "recall" in key or key == "gap"):
            rows.append((name, pct(value)))
        else:
            rows.append((name, number(value)))
    return rows


def _symptoms(summary: Summary) -> Section:
    items = []
    for symptom in summary.symptoms:
        text = symptom.statement
        if symptom.refuted_by:
            text += (
                f" Its direct remedy was tested ({', '.join(symptom.refuted_by)}) without a gain, "
                "so it is not claimed as a cause."
            )
        items.append(
            Item(
                title=symptom.title,
                text=text,
                badge="symptom",
                rows=_scalar_rows(symptom.evidence),
            )
        )
    for fact in summary.facts:
        items.append(Item(title=fact.title, text=fact.statement, badge="data", rows=_scalar_rows(fact.evidence)))
    return Section(
        "symptoms",
        "What the baseline's runs show",
        items=items,
        empty="The baseline's runs show no symptom: it trains, fits and generalizes as expected.",
    )


def _strengths(summary: Summary) -> Section:
    return Section(
        "strengths",
        "What the baseline already gets right",
        intro="Changes that significantly lower test accuracy: the baseline is right not to make them."
        if summary.strengths
        else "",
        items=[Item(title=f.title, text=f.statement, badge="hurts") for f in summary.strengths],
        empty="No change tested makes the baseline significantly worse.",
    )


def _inconclusive(summary: Summary) -> Section:
    items = [Item(title=item.variant, text=item.statement) for item in summary.inconclusive]
    items += [Item(title="Not compared", text=text, badge="data") for text in summary.not_comparable]
    return Section(
        "inconclusive",
        "What the study cannot tell",
        items=items,
        empty="Every comparison with the baseline was settled by the seeds run.",
    )


def _next_steps(summary: Summary) -> Section:
    steps = summary.next_steps
    items = [Item(title=action) for action in steps.actions]
    if steps.recommended_spec:
        state = "untested as a combination" if steps.untested else "measured"
        items.append(
            Item(
                title="Recommended config",
                text=f"The significant fixes combined ({', '.join(steps.combined_from)}; {state}).",
                code=[("Paste into the spec", steps.recommended_spec)],
            )
        )
    if steps.next_study:
        items.append(
            Item(
                title="Next study",
                text=f"{steps.next_study} beside this report {steps.next_study_reason}: "
                f"ablate run {steps.next_study}",
            )
        )
    return Section("next-steps", "Next steps", items=items, ordered=True)

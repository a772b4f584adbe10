"""The report's diagnosis as sections of plain text, rendered alike by report.md and index.html.

The answer comes first (the verdict and how significance was judged), then the causes with
their fixes, the baseline's symptoms, what the baseline already gets right, what the study
cannot tell, and the next steps. Escaping is the renderer's job; the cards are in `cards.py`,
the sections only some studies have are in `study_sections.py`.
"""

from __future__ import annotations

from typing import Any

from service.report.analysis_models import LearningCurve
from service.report.cards import Item, Section
from service.report.diagnosis_models import Cause
from service.report.formatting import as_sentence, cause_amounts, number, p_value, pct, points
from service.report.learning_curve import beside, sentence
from service.report.models import Summary
from service.report.study_sections import (
    factorial_section,
    label_issues_section,
    learning_curve_section,
    repair_section,
    stages_section,
)


def sections(summary: Summary) -> list[Section]:
    return [
        Section(
            "answer",
            "The answer",
            intro=as_sentence(summary.verdict) + " " + summary.statistics.statement,
        ),
        *([repair_section(summary)] if summary.repair is not None else []),
        _causes(summary),
        *([factorial_section(summary.factorial)] if summary.factorial is not None else []),
        _symptoms(summary),
        *(
            [learning_curve_section(summary.learning_curve)]
            if summary.learning_curve is not None
            else []
        ),
        *([label_issues_section(summary.label_issues)] if summary.label_issues is not None else []),
        _strengths(summary),
        _inconclusive(summary),
        *([stages_section(summary)] if summary.stages else []),
        _next_steps(summary),
    ]


def _causes(summary: Summary) -> Section:
    return Section(
        "causes",
        "What is causing low accuracy",
        items=[_cause(cause, summary.learning_curve) for cause in summary.causes],
        empty=(
            "Nothing to fix found: no change tested helps by at least a point of test accuracy "
            "and the baseline's runs show no symptom of a problem."
        ),
        ordered=True,
    )


def _cause(cause: Cause, curve: LearningCurve | None = None) -> Item:
    code = []
    if cause.fix is not None:
        code.append((f"The fix, measured ({cause.fix.variant})", cause.fix.spec))
    code += [
        ("To try (untested; alternatives)" if index == 0 else "", fix.spec)
        for index, fix in enumerate(cause.try_next)
    ]
    measured, missing = cause_amounts(cause)
    rows = []
    if measured:
        rows.append(("fix measured", measured))
    if cause.fix is not None and cause.fix.ci_low is not None:
        rows.append(("p (BH-adjusted)", p_value(cause.fix.p_adjusted)))
    if missing:
        rows.append(("missing by the symptom", missing))
    reading = f" {sentence(curve)}" if curve is not None and beside(cause) else ""
    return Item(
        title=cause.title,
        text=f"{cause.statement}{reading} What to do: {cause.advice}",
        badge={"fix": "fix", "symptom": "symptom", "fix and symptom": "fix"}[cause.basis],
        code=code,
        rows=rows,
    )


POINT_KEYS = ("delta", "gain", "stake", "gap", "deficit", "drop", "rise", "difference", "minus")
"""Evidence keys whose value is a difference of accuracies: shown in points."""
PERCENT_KEYS = ("accuracy", "recall", "share", "chance", "fraction", "rate_of")
"""Evidence keys whose value is an accuracy or a share: shown in percent."""
MAX_ITEMS = 12
"""A list or mapping in the evidence shows at most this many items, then a count."""


def _evidence_value(key: str, value: Any) -> str:
    """One evidence value as text a reader can check: points for differences, percent for
    accuracies and shares, mappings as `key: value` pairs, never raw JSON."""
    if isinstance(value, bool) or value is None:
        return number(value)
    if isinstance(value, float):
        if key.endswith("p_value"):
            return p_value(value)
        if key.endswith("slope"):
            return f"{points(value)} per epoch"
        if any(word in key for word in POINT_KEYS):
            return points(value)
        if any(word in key for word in PERCENT_KEYS) and 0 <= value <= 1:
            return pct(value)
        return number(value)
    if isinstance(value, dict):
        items = list(value.items())
        text = ", ".join(f"{k}: {_evidence_value(key, v)}" for k, v in items[:MAX_ITEMS])
        return text + (f" (and {len(items) - MAX_ITEMS} more)" if len(items) > MAX_ITEMS else "")
    if isinstance(value, (list, tuple)):
        text = ", ".join(_evidence_value(key, v) for v in value[:MAX_ITEMS])
        return text + (f" (and {len(value) - MAX_ITEMS} more)" if len(value) > MAX_ITEMS else "")
    return number(value)


def _scalar_rows(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key.replace("_", " "), _evidence_value(key, value)) for key, value in evidence.items()]


def _symptoms(summary: Summary) -> Section:
    items = []
    claimed = any(beside(cause) for cause in summary.causes)
    for symptom in summary.symptoms:
        text = symptom.statement
        if symptom.rule == "overfitting" and summary.learning_curve is not None and not claimed:
            text += " " + sentence(summary.learning_curve)
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
        items.append(
            Item(
                title=fact.title,
                text=fact.statement,
                badge="data",
                rows=_scalar_rows(fact.evidence),
            )
        )
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
    items += [
        Item(title="Not compared", text=text, badge="data") for text in summary.not_comparable
    ]
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

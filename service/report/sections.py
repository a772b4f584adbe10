"""The report's diagnosis as sections of plain text, rendered alike by report.md and index.html.

The answer comes first (the verdict and how significance was judged), then the causes with
their fixes, the baseline's symptoms, what the baseline already gets right, what the study
cannot tell, and the next steps. Escaping is the renderer's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from service.report.analysis_models import Factorial, LabelIssues, LearningCurve
from service.report.diagnosis_models import Cause
from service.report.formatting import cause_amounts, interval, number, p_value, pct, points
from service.report.learning_curve import beside, sentence, share
from service.report.models import Summary


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
        Section(
            "answer",
            "The answer",
            intro=_sentence(summary.verdict) + " " + summary.statistics.statement,
        ),
        *([_repair(summary)] if summary.repair is not None else []),
        _causes(summary),
        *([_factorial(summary.factorial)] if summary.factorial is not None else []),
        _symptoms(summary),
        *([_learning_curve(summary.learning_curve)] if summary.learning_curve is not None else []),
        *([_label_issues(summary.label_issues)] if summary.label_issues is not None else []),
        _strengths(summary),
        _inconclusive(summary),
        *([_stages(summary)] if summary.stages else []),
        _next_steps(summary),
    ]


def _repair(summary: Summary) -> Section:
    """A staged diagnosis's repaired config: the fixes merged, and what they measured."""
    repair = summary.repair
    if not repair.changes:
        return Section(
            "repair", "The repaired config",
            empty="Nothing to fix found: the diagnosis kept the baseline as it is.",
        )
    measured = (
        f"Measured against the baseline: {points(repair.gain)}, 95% interval "
        f"{interval(repair.ci_low, repair.ci_high, signed=True)}, p {p_value(repair.p_value)}."
        if repair.gain is not None
        else "Not measured as one config: train the repaired spec to measure it."
    )
    balanced = {
        v.name for v in summary.variants if v.vs_baseline and v.vs_baseline.metric == "balanced_accuracy"
    }
    rows = [
        (
            fix.variant,
            f"{points(fix.gain)}{' of balanced accuracy' if fix.variant in balanced else ''} "
            f"({fix.decided_by}, p {p_value(fix.p_value)})",
        )
        for fix in repair.fixes
        if fix.variant not in repair.dropped
    ]
    rows += [(name, "left out: a larger fix sets the same setting") for name in repair.dropped]
    rows += [(name, "not borne out on fresh seeds") for name in repair.refuted]
    change = "\n".join(f"{path}: {json.dumps(value)}" for path, value in repair.changes.items())
    code = [(f"The changes ({repair.file} beside this report is the whole spec)", change)]
    return Section(
        "repair",
        "The repaired config",
        intro=measured,
        items=[Item(title="The fixes found, merged", badge="fix", code=code, rows=rows)],
    )


def _stages(summary: Summary) -> Section:
    """The path the staged diagnosis took, each stage with the reason it was planned."""
    return Section(
        "stages",
        "How the diagnosis went",
        items=[
            Item(
                title=f"Stage {stage.index + 1}: {stage.kind}",
                text=stage.reason,
                rows=[("variants", ", ".join(stage.variants)), ("runs", str(stage.runs))],
            )
            for stage in summary.stages
        ],
        ordered=True,
    )


def _label_issues(found: LabelIssues) -> Section:
    """The training samples most likely mislabelled: one row per sample, as the user finds it."""
    intro = (
        f"cleanlab flags {found.flagged} of {found.samples} training samples "
        f"({pct(found.flagged / max(1, found.samples))}) as likely mislabelled: each sample was "
        f"scored by a model that never trained on it ({found.folds} out-of-fold runs, each "
        "holding out one fold of the training split; these runs are not variants and no "
        "comparison uses them). Check the listed labels first: relabel or drop the wrong ones."
    )
    if found.note:
        intro += " " + _sentence(found.note)
    rows = [
        (
            issue.name,
            f"labelled {issue.given}, predicted {issue.predicted} ({pct(issue.predicted_confidence)}); "
            f"confidence in the given label {pct(issue.given_confidence)}",
        )
        for issue in found.top
    ]
    items = (
        [Item(title=f"The {len(rows)} most likely mislabelled, lowest confidence in the given "
                    "label first", badge="data", rows=rows)]
        if rows
        else []
    )  # fmt: skip
    return Section(
        "label_issues",
        "Training samples most likely mislabelled",
        intro=intro,
        items=items,
        empty="No sample is flagged.",
    )


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


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


def _factorial(factorial: Factorial) -> Section:
    """A grid's factors: each factor's ANOVA, share of variance and main effects against the
    baseline's level; the interactions; what the design could not estimate."""
    items = []
    effects = {}
    for effect in factorial.main_effects:
        effects.setdefault(effect.factor, {})[effect.level] = effect
    for factor in factorial.factors:
        share = (
            f", explains {pct(factor.eta_squared)} of the variance"
            if factor.eta_squared is not None
            else ""
        )
        rows = []
        for level in factor.levels:
            value = pct(level.mean) + f" (n={level.seeds})"
            if level.level == factor.baseline_level:
                value += ", the baseline's level"
            effect = effects.get(factor.factor, {}).get(level.level)
            if effect is not None:
                value += (
                    f"; {points(effect.delta)} "
                    f"{interval(effect.ci_low, effect.ci_high, signed=True)}"
                    f", p (BH) {p_value(effect.p_adjusted)}"
                    + (", significant" if effect.significant else "")
                )
            rows.append((level.level, value))
        items.append(
            Item(
                title=f"{factor.factor}: ANOVA p {p_value(factor.p_value)}{share}",
                text=(
                    "Marginal mean test accuracy per level (averaged over the other factors) and, "
                    "against the baseline's level, the main effect with its 95% interval."
                ),
                badge="helps"
                if any(
                    e.significant and e.delta > 0 for e in effects.get(factor.factor, {}).values()
                )
                else "",
                rows=rows,
            )
        )
    for interaction in factorial.interactions:
        verdict = (
            "its factors' effects depend on each other"
            if interaction.significant
            else "no interaction shown"
        )
        items.append(
            Item(
                title=(
                    f"{' × '.join(interaction.factors)}: "
                    f"p (BH) {p_value(interaction.p_adjusted)}"
                ),
                text=(
                    f"Two-way interaction, {pct(interaction.eta_squared)} of the variance: "
                    f"{verdict}."
                ),
            )
        )
    items += [Item(title="Note", text=note, badge="data") for note in factorial.notes]
    model = {
        "two-way": "main effects and every two-way interaction",
        "additive": "main effects only",
        "none": "nothing estimable",
    }[factorial.model]
    return Section(
        "factorial",
        "The grid's factors",
        intro=(
            "The grid read as a factorial design: a linear model of each run's test accuracy "
            f"({model}; seeds are replicates; {factorial.residual_df} residual degrees of "
            "freedom), a Type II ANOVA per factor, and each factor's main effect against the "
            "baseline's own level, Benjamini-Hochberg adjusted over the grid."
        ),
        items=items,
    )


def _learning_curve(curve: LearningCurve) -> Section:
    """The curve's points, one row per share of the training split, and its reading."""
    rows = []
    for point in curve.points:
        name = share(point.fraction) + (f" ({point.samples} samples)" if point.samples is not None else "")
        test = point.test_accuracy
        value = (
            f"test {pct(test.mean)} {interval(test.ci_low, test.ci_high)}, validation "
            f"{pct(point.val_accuracy.mean)}, training {pct(point.train_accuracy.mean)} "
            f"({test.n} seed{'s' if test.n != 1 else ''}; {point.variant})"
        )
        rows.append((name, value))
    return Section(
        "learning_curve",
        "Learning curve: would more data help?",
        intro=(
            f"{curve.statement[:1].upper()}{curve.statement[1:]}. Each point trains the baseline's "
            "config on a share of the training split (training.train_fraction) and is scored on "
            "the same test set; a point is never a fix or a cause. The reading compares the two "
            "largest shares (Welch's test on the seeds, 95% interval)."
        ),
        items=[Item(title="Accuracy per share of the training split", badge="data", rows=rows)],
    )


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

"""The report's sections that only some studies have: a staged diagnosis's repaired config and
its stages, a grid's factorial analysis, the learning curve, and the training samples most likely
mislabelled. `sections.py` places them on the page.
"""

from __future__ import annotations

import json

from service.report.analysis_models import Factorial, LabelIssues, LearningCurve
from service.report.cards import Item, Section
from service.report.formatting import as_sentence, interval, p_value, pct, points
from service.report.learning_curve import share
from service.report.models import Summary


def repair_section(summary: Summary) -> Section:
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


def stages_section(summary: Summary) -> Section:
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


def label_issues_section(found: LabelIssues) -> Section:
    """The training samples most likely mislabelled: one row per sample, as the user finds it."""
    intro = (
        f"cleanlab flags {found.flagged} of {found.samples} training samples "
        f"({pct(found.flagged / max(1, found.samples))}) as likely mislabelled: each sample was "
        f"scored by a model that never trained on it ({found.folds} out-of-fold runs, each "
        "holding out one fold of the training split; these runs are not variants and no "
        "comparison uses them). Check the listed labels first: relabel or drop the wrong ones."
    )
    if found.note:
        intro += " " + as_sentence(found.note)
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


def factorial_section(factorial: Factorial) -> Section:
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


def learning_curve_section(curve: LearningCurve) -> Section:
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

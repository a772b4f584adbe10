"""The diagnosis: what is wrong with the baseline, how sure the study is, and what to change.

A cause is claimed only from evidence about the baseline: a change from it that significantly
helps by at least MIN_GAIN (a fix; what it changed names the cause, `rules.fix_rule`), or a
symptom of its own runs (`symptoms`). A symptom and the fixes that repair it are one cause.
Causes are ranked by the accuracy at stake: a fix's measured gain, a symptom's stake. Changes
that significantly hurt say what the baseline already gets right; they are never causes. Only
comparisons on the baseline's test set are claimed. Significance is Benjamini-Hochberg over the
study's comparisons (`stats.adjust`).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.report.advice import cause_advice, cause_title
from service.report.analysis_models import Factorial
from service.report.contrast import (
    Contrast,
    StudyContrasts,
    build_study,
    effect,
    main_effect_contrasts,
)
from service.report.data_facts import data_findings
from service.report.diagnosis_models import Cause, Finding, Inconclusive, Statistics, Symptom
from service.report.learning_curve import FRACTION
from service.report.next_steps import at_edge, fix_of, suggestions
from service.report.rules import comparable, fix_rule, remedies
from service.report.rules.causes import CANDIDATES, EXPLAINS, FALLBACK, TRAINING_TROUBLE
from service.report.rules.thresholds import (
    MIN_GAIN,
    MIN_SYMPTOM_STAKE,
    RATE_MARGIN,
    TYPICAL_RATES,
)
from service.report.study_data import StudyData
from service.report.symptoms import read_symptoms
from service.report.uncertainty import inconclusive, statistics
from service.report.variant_models import CONFIRM_SUFFIX, VariantStats
from service.report.wording import describe, metric_words, p_text, points


@dataclass
class Diagnosis:
    causes: list[Cause]
    symptoms: list[Symptom]
    strengths: list[Finding]
    facts: list[Finding]
    inconclusive: list[Inconclusive]
    not_comparable: list[str]
    small_gains: list[str]
    statistics: Statistics
    study: StudyContrasts | None


def diagnose(
    data: StudyData,
    stats: list[VariantStats],
    alpha: float = 0.05,
    factorial: Factorial | None = None,
) -> Diagnosis:
    """The diagnosis of a study; a grid's `factorial` analysis adds its main effects, read as
    fixes (or as what the baseline gets right) by the same rules as a variant."""
    if not data.variants:
        return Diagnosis([], [], [], [], [], [], [], statistics(None, alpha), None)
    study = build_study(data, stats, alpha)
    fair = [c for c in study.contrasts if comparable(c)]
    main = [c for c in main_effect_contrasts(study, factorial) if comparable(c)]
    symptoms, facts = read_symptoms(study)
    facts += data_findings(data, study.config)
    fixes = [
        c
        for c in fair + main
        if c.better and c.delta >= MIN_GAIN and not _combination_explained(c, factorial)
    ]
    for symptom in symptoms:
        tested = remedies(study, symptom.rule, fair)
        if tested and not any(c in fixes for c in tested) and all(_no_gain(c) for c in tested):
            symptom.refuted_by = [c.name for c in tested]
    # A staged diagnosis confirms a promising change once, on fresh seeds: one its confirmation
    # did not bear out is not promising any more, on either set of seeds.
    confirmed_once = {c.name.removesuffix(CONFIRM_SUFFIX) for c in fair if c.name.endswith(CONFIRM_SUFFIX)}
    not_confirmed = [
        c for c in fair if c.name.endswith(CONFIRM_SUFFIX) and not c.significant and c.delta > 0
    ]
    promising = [
        c
        for c in fair
        if not c.significant
        and c.delta >= MIN_GAIN
        and c.stats.vs_baseline is not None
        and c.stats.vs_baseline.p_value is not None
        and c.stats.vs_baseline.p_value < alpha
        and c.name.removesuffix(CONFIRM_SUFFIX) not in confirmed_once
    ]
    causes = _causes(study, symptoms, fixes, promising, not_confirmed)
    return Diagnosis(
        causes=causes,
        symptoms=symptoms,
        strengths=_strengths(study, fair + main),
        facts=facts,
        inconclusive=inconclusive(study, fair),
        not_comparable=[_unfair_text(c) for c in study.contrasts if not comparable(c)],
        small_gains=[
            f"{c.name} ({describe(c.changes)}) raises {metric_words(c.metric)} by "
            f"{points(c.delta)} ({p_text(c.stats.vs_baseline.p_adjusted)}): significant, but below the "
            f"{MIN_GAIN * 100:.0f}-point gain that counts as a cause."
            for c in fair
            if c.better and c.delta < MIN_GAIN
        ],
        statistics=statistics(study, alpha),
        study=study,
    )


def _combination_explained(c: Contrast, factorial: Factorial | None) -> bool:
    """A grid cell that changes several factors at once is read through the factorial model:
    its gain is the factors' main effects (claimed on their own) unless those factors
    significantly interact, when the combination itself is the finding."""
    if factorial is None or factorial.model == "none":
        return False
    touched = {
        factor.factor
        for factor in factorial.factors
        for path in c.changes
        if any(path == p or path.startswith(p + ".") for p in factor.paths)
    }
    if len(touched) < 2:
        return False
    return not any(
        i.significant and set(i.factors) <= touched for i in factorial.interactions
    )


def _no_gain(c: Contrast) -> bool:
    """The remedy was measured and gained less than MIN_GAIN: no evidence that it helps."""
    return c.stats.vs_baseline is not None and c.delta < MIN_GAIN


# Causes


def _causes(
    study: StudyContrasts,
    symptoms: list[Symptom],
    fixes: list[Contrast],
    promising: list[Contrast],
    not_confirmed: list[Contrast] = (),
) -> list[Cause]:
    """Symptoms attached to the fixes that repair them. A symptom established on its own
    evidence with no significant fix among its candidates is attributed to a promising one
    (significant before the study-wide adjustment, not after), which its cause then asks to
    confirm; a promising change alone is never a cause."""
    by_rule: dict[str, list[Contrast]] = {}
    for c in fixes:
        by_rule.setdefault(fix_rule(study, c), []).append(c)
    hopeful: dict[str, Contrast] = {}
    present = {s.rule for s in symptoms if not s.refuted_by}
    claimed: dict[str, list[Symptom]] = {}
    for symptom in symptoms:
        if symptom.refuted_by or (symptom.stake < MIN_GAIN and symptom.rule not in TRAINING_TROUBLE):
            continue
        if symptom.stake < MIN_SYMPTOM_STAKE and symptom.rule not in TRAINING_TROUBLE:
            fixed_any = [r for r in CANDIDATES.get(symptom.rule, ()) if r in by_rule]
            if not fixed_any:
                continue  # too little at stake to name on the symptom alone
        explained_by = [
            s for s, covers in EXPLAINS.items() if s in present and symptom.rule in covers
        ]
        if (
            "class_imbalance" in present
            and symptom.rule == "learned_nothing"
            and _predicts_the_majority(study, symptom)
        ):
            explained_by.insert(0, "class_imbalance")
        fixed = [r for r in CANDIDATES.get(symptom.rule, ()) if r in by_rule]
        hopes = [c for c in promising if fix_rule(study, c) in CANDIDATES.get(symptom.rule, ())]
        if fixed:
            rule = max(fixed, key=lambda r: max(c.delta for c in by_rule[r]))
        elif hopes and not explained_by:
            best = max(hopes, key=lambda c: c.delta)
            rule = fix_rule(study, best)
            hopeful[rule] = best
        elif explained_by:
            rule = FALLBACK[explained_by[0]]
        else:
            rule = _at_a_glance(study, symptom) or FALLBACK[symptom.rule]
        claimed.setdefault(rule, []).append(symptom)
    causes = []
    for rule in dict.fromkeys([*claimed, *by_rule]):
        causes.append(
            _cause(
                study, rule, by_rule.get(rule, []), claimed.get(rule, []), hopeful.get(rule),
                [c for c in not_confirmed if fix_rule(study, c) == rule],
            )
        )
    causes.sort(key=lambda cause: -cause.gain)
    return causes


def _predicts_the_majority(study: StudyContrasts, symptom: Symptom) -> bool:
    """A network at chance that predicts the largest training class for most test samples:
    the imbalance, not the optimizer, is what it learned."""
    facts = study.data.dataset
    if facts is None or not facts.train_class_counts:
        return False
    largest = facts.train_class_counts.index(max(facts.train_class_counts))
    return (
        symptom.evidence["most_predicted_class"] == largest
        and symptom.evidence["most_predicted_share"] > 0.5
    )


def _at_a_glance(study: StudyContrasts, symptom: Symptom) -> str | None:
    """What an engineer reads off a baseline that does not train when no tested change repairs
    it: a rate far outside the optimizer's sane range, or a loss that falls, if slowly (the
    optimizer moves, too little)."""
    if symptom.rule not in ("learned_nothing", "underfitting"):
        return None
    name, rate = study.flat.get("optimizer.name"), study.flat.get("optimizer.learning_rate")
    low, high = TYPICAL_RATES.get(name, (None, None))
    if rate and high and rate > high * RATE_MARGIN:
        return "learning_rate_too_high"
    if rate and low and rate < low / RATE_MARGIN:
        return "learning_rate_too_low"
    if symptom.rule == "learned_nothing" and symptom.evidence.get("loss_falling_slowly"):
        return "learning_rate_too_low"
    return None


def _cause(
    study: StudyContrasts,
    rule: str,
    fixes: list[Contrast],
    symptoms: list[Symptom],
    hopeful: Contrast | None = None,
    not_confirmed: list[Contrast] = (),
) -> Cause:
    fixes = sorted(fixes, key=lambda c: -c.delta)
    best = fixes[0] if fixes else None
    stake = max((s.stake for s in symptoms), default=0.0)
    gain = max(best.delta if best else 0.0, stake)
    basis = "fix and symptom" if best and symptoms else "fix" if best else "symptom"
    evidence: dict = {}
    for s in symptoms:
        evidence[s.rule] = s.evidence
    if best is not None:
        evidence["fix"] = effect(study, best)
        if len(fixes) > 1:
            evidence["also"] = [effect(study, c) for c in fixes[1:]]
    fix = fix_of(study, best) if best else None
    try_next = suggestions(study, rule) if best is None or at_edge(study, rule, best) else []
    if hopeful is not None:
        try_next = [fix_of(study, hopeful, confirmed=False), *try_next]
        evidence["promising"] = effect(study, hopeful)
    sentences = [s.statement for s in symptoms]
    if best is not None:
        comparison = best.stats.vs_baseline
        sentences.append(
            f"{best.name} ({describe(best.changes)}) raises {metric_words(best.metric)} by "
            f"{points(best.delta)} (95% CI {comparison.ci_low * 100:+.1f} to "
            f"{comparison.ci_high * 100:+.1f}, {p_text(comparison.p_adjusted)}){_plain(study, best)}."
        )
    if hopeful is not None:
        comparison = hopeful.stats.vs_baseline
        sentences.append(
            f"{hopeful.name} ({describe(hopeful.changes)}) looks like the fix: "
            f"{points(hopeful.delta)}{_of(hopeful)} ({p_text(comparison.p_value)} on its own, "
            f"{p_text(comparison.p_adjusted)} adjusted for the study's comparisons): promising, "
            "not yet significant; confirm it with more seeds."
        )
    for c in not_confirmed:
        comparison = c.stats.vs_baseline
        sentences.append(
            f"{c.name.removesuffix(CONFIRM_SUFFIX)} ({describe(c.changes)}) was not confirmed on fresh "
            f"seeds: {points(c.delta)}{_of(c)} against the baseline retrained on them "
            f"({p_text(comparison.p_adjusted)} after Holm's adjustment among the confirmations)."
        )
    if not_confirmed:
        evidence["not_confirmed"] = [effect(study, c) for c in not_confirmed]
    records = [study.baseline_record] + [c.record for c in fixes]
    title = cause_title(rule, best, symptoms)
    if hopeful is not None:
        title += f"; {hopeful.name} looks like the fix ({points(hopeful.delta)}{_of(hopeful)}, to confirm)"
    return Cause(
        rule=rule,
        title=title,
        statement=" ".join(sentences),
        basis=basis,
        gain=gain,
        fix=fix,
        try_next=try_next,
        advice=cause_advice(rule, fix, try_next),
        symptoms=[s.rule for s in symptoms],
        evidence=evidence,
        variants=[r.name for r in records],
        run_ids=list(dict.fromkeys(run.run_id for r in records for run in r.runs)),
    )


# What the baseline already gets right


def _strengths(study: StudyContrasts, fair: list[Contrast]) -> list[Finding]:
    found = []
    for c in fair:
        if c.all_diverged and study.baseline.succeeded:
            statement = (
                f"{c.name} ({describe(c.changes)}) diverged in all {c.stats.seeds} seeds, while "
                "the baseline trains: keep the baseline's setting."
            )
            magnitude, title = study.baseline.test_accuracy.mean or 0.0, f"{c.name} diverges"
        elif c.worse:
            comparison = c.stats.vs_baseline
            statement = (
                f"{c.name} ({describe(c.changes)}) lowers {metric_words(c.metric)} by "
                f"{abs(c.delta) * 100:.1f} points (95% CI {comparison.ci_low * 100:+.1f} to "
                f"{comparison.ci_high * 100:+.1f}, {p_text(comparison.p_adjusted)}){_plain(study, c)}: "
                "the baseline is right not to make this change."
            )
            magnitude, title = abs(c.delta), f"{c.name} hurts: {points(c.delta)}{_of(c)}"
        else:
            continue
        found.append(
            Finding(
                rule=fix_rule(study, c),
                title=title,
                kind="hurts",
                statement=statement,
                evidence=effect(study, c) if c.stats.vs_baseline else {"variant": c.name},
                variants=[study.baseline.name, c.name],
                run_ids=list(
                    dict.fromkeys(
                        run.run_id for r in (study.baseline_record, c.record) for run in r.runs
                    )
                ),
                magnitude=magnitude,
            )
        )
    return sorted(found, key=lambda f: -f.magnitude)


def _of(c: Contrast) -> str:
    """' of balanced accuracy' after a balanced comparison's points; plain accuracy goes unsaid."""
    return f" of {metric_words(c.metric, short=True)}" if c.metric == "balanced_accuracy" else ""


def _plain(study: StudyContrasts, c: Contrast) -> str:
    """What plain test accuracy did beside a balanced-accuracy comparison."""
    moved = effect(study, c).get("test_accuracy_delta") if c.metric == "balanced_accuracy" else None
    return "" if moved is None else f"; plain test accuracy moves by {points(moved)}"


def _unfair_text(c: Contrast) -> str:
    if c.only(FRACTION):
        return (
            f"{c.name} ({describe(c.changes)}) trains on a share of the training split: a point "
            "of the learning curve (scored on the same test set, shown there), never a fix."
        )
    return (
        f"{c.name} ({describe(c.changes)}) changes the data or the split, so it is scored on a "
        "different test set: its difference is shown but not claimed as an effect."
    )

"""Where the symptoms point: the causes to search, in tiers, read from the report's own tables.

`CANDIDATES[symptom]` lists the causes that may lie behind a symptom, likeliest first (a
symptom without candidates names its `FALLBACK` cause); `EXPLAINS` says which symptom explains
another (unscaled input explains a network that learned nothing). A search stage takes the next
two candidates of every symptom (tier 0: the first two, e.g. a learning rate too high or too low
for a network that learned nothing, capacity and epochs for underfitting), training that fails
outright first, then explaining symptoms; the next tier is searched only when the last found
nothing.
"""

from __future__ import annotations

from typing import Any

from service.diagnose.models import StageVariant
from service.diagnose.remedies import SEARCHED, rate_range, remedies
from service.report.diagnosis_models import Symptom
from service.report.label_issues import HOLDOUT_PATH
from service.report.models import Summary
from service.report.rules.causes import CANDIDATES, EXPLAINS, FALLBACK, TRAINING_TROUBLE
from service.report.rules.thresholds import MIN_GAIN

TIER_WIDTH = 2
"""Candidate causes of each symptom per search stage."""
FOLDS = 4
"""Out-of-fold runs of the baseline when label noise is searched: each trains on 3/4 of the
training split (close to the baseline) and predicts the other quarter."""
OUT_OF_FOLD = "out_of_fold"
"""The factor of out-of-fold runs: never compared, confirmed or merged into the repair."""
RATE_CAUSES = ("learning_rate_too_high", "learning_rate_too_low")


def active_symptoms(summary: Summary) -> list[Symptom]:
    """The baseline's symptoms worth a search, in the order their causes are searched:
    training that fails outright first (its learning-rate range before anything else), then a
    symptom that explains others (unscaled input, too few updates), then by stake.
    A symptom whose remedy was already tested without a gain, or with less than MIN_GAIN at
    stake (and not a failure to train), is left out, as the report leaves it out of causes."""
    kept = [
        s
        for s in summary.symptoms
        if not s.refuted_by and (s.stake >= MIN_GAIN or s.rule in TRAINING_TROUBLE)
    ]
    present = {s.rule for s in kept}
    explaining = {s for s, covers in EXPLAINS.items() if s in present and present & set(covers)}
    first = "class_imbalance" if _imbalance_learned(kept) else None
    return sorted(
        kept,
        key=lambda s: (
            s.rule != first,
            s.rule not in TRAINING_TROUBLE,
            s.rule not in explaining,
            -s.stake,
        ),
    )


def _imbalance_learned(symptoms: list[Symptom]) -> bool:
    """A network at chance that predicts the largest training class for most test samples
    learned the imbalance, not nothing (the report reads it so: `diagnosis._predicts_the_majority`):
    class weighting comes before the learning-rate range."""
    by_rule = {s.rule: s for s in symptoms}
    imbalance, nothing = by_rule.get("class_imbalance"), by_rule.get("learned_nothing")
    if imbalance is None or nothing is None:
        return False
    counts = imbalance.evidence.get("train_class_counts") or []
    return (
        bool(counts)
        and nothing.evidence.get("most_predicted_class") == counts.index(max(counts))
        and (nothing.evidence.get("most_predicted_share") or 0.0) > 0.5
    )


STRONG_L2 = 0.01
STRONG_DROPOUT = 0.6
STRONG_CONV_DROPOUT = 0.4
STRONG_ROTATION = 0.25
"""Settings far past the usual range (L2 1e-4 to 1e-3, dropout up to 0.5, rotations of a
few degrees): an engineer reading such a config suspects it at once."""


def glaring_causes(baseline: dict[str, Any], symptoms: list[Symptom]) -> list[str]:
    """Causes the baseline's own config points at (regularization or augmentation far past the
    usual range) that could explain one of its symptoms: searched in the first stage, beside
    the symptoms' own first candidates, instead of only after those found nothing."""
    model, augmentation = baseline["model"], baseline.get("augmentation") or {}
    found = []
    if (
        (model.get("l2") or 0.0) >= STRONG_L2
        or (model.get("dropout") or 0.0) >= STRONG_DROPOUT
        or (model.get("conv_dropout") or 0.0) >= STRONG_CONV_DROPOUT
    ):
        found.append("over_regularization")
    if augmentation.get("vertical_flip") or (augmentation.get("rotation") or 0.0) >= STRONG_ROTATION:
        found.append("harmful_augmentation")
    return [c for c in found if any(c in causes_of(s.rule) for s in symptoms)]


def causes_of(symptom: str) -> tuple[str, ...]:
    return CANDIDATES.get(symptom) or ((FALLBACK[symptom],) if symptom in FALLBACK else ())


def tier_causes(symptoms: list[Symptom], tier: int) -> list[str]:
    """The causes searched at `tier` (0 first), in rank order, each once."""
    start = tier * TIER_WIDTH
    ordered: list[str] = []
    for symptom in symptoms:
        ordered += causes_of(symptom.rule)[start : start + TIER_WIDTH]
    return list(dict.fromkeys(ordered))


def last_tier(symptoms: list[Symptom]) -> int:
    longest = max((len(causes_of(s.rule)) for s in symptoms), default=0)
    return max(0, (longest - 1) // TIER_WIDTH)


def search_variants(
    causes: list[str], baseline: dict[str, Any], seed: int = 0
) -> list[StageVariant]:
    """The variants testing `causes`, most direct first. Both rate causes in one tier are one
    log-spaced range in both directions, placed where the first of them ranks. Label noise
    also trains the baseline's out-of-fold runs (on `seed` alone), for the report's list of
    the samples most likely mislabelled."""
    found: list[StageVariant] = []
    for cause in causes:
        if cause == "label_noise":  # its remedy first, then the out-of-fold runs
            found += remedies(cause, baseline) + out_of_fold_variants(seed)
            continue
        if cause in RATE_CAUSES and all(c in causes for c in RATE_CAUSES):
            if cause == next(c for c in causes if c in RATE_CAUSES):
                found += rate_range(baseline, (-1, 1))
            continue
        found += remedies(cause, baseline)
    return found


def out_of_fold_variants(seed: int, folds: int = FOLDS) -> list[StageVariant]:
    """The baseline's `folds` out-of-fold runs: each holds one fold of the training split out and
    predicts it. Not variants to compare (`service.report.label_issues` keeps them apart): the
    report merges their predictions and lists the samples most likely mislabelled."""
    return [
        StageVariant(
            name=f"baseline fold {fold + 1}/{folds}",
            factor=OUT_OF_FOLD,
            overrides={HOLDOUT_PATH: {"folds": folds, "fold": fold}},
            seeds=[seed],
        )
        for fold in range(folds)
    ]


def whole_fold_sets(kept: list[StageVariant], offered: list[StageVariant]) -> list[StageVariant]:
    """`kept` (a budget's cut of `offered`) without out-of-fold runs unless all of them are
    kept: a set without one of its folds cannot score every training sample."""
    folds = [v for v in offered if v.factor == OUT_OF_FOLD]
    if all(any(v is k for k in kept) for v in folds):
        return kept
    return [v for v in kept if v.factor != OUT_OF_FOLD]


def search_reason(symptoms: list[Symptom], causes: list[str], tier: int) -> str:
    """The stage's reason: what the baseline shows and what is searched."""
    shown = ", ".join(s.rule.replace("_", " ") for s in symptoms)
    if all(c in causes for c in RATE_CAUSES):
        causes = [c for c in causes if c != "learning_rate_too_low"]
        what = [
            "a learning-rate range over several decades, log-spaced in both directions"
            if c == "learning_rate_too_high"
            else SEARCHED[c]
            for c in causes
            if c in SEARCHED
        ]
    else:
        what = [SEARCHED[c] for c in causes if c in SEARCHED]
    head = f"The baseline shows: {shown}. " if tier == 0 else "The previous search found no fix. "
    text = head + "Searching " + _series(list(dict.fromkeys(what))) + "."
    if "label_noise" in causes:
        text += (
            " Test accuracy above validation points to noisy training labels: the baseline is "
            f"also trained {FOLDS} times on one seed, each run holding out one fold of the "
            "training split, and from their out-of-fold predictions the report lists the "
            "samples most likely mislabelled (confident learning)."
        )
    return text


def _series(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]

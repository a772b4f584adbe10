"""How a cause reads: its headline, and what to change in one sentence (including the remedies
that lie outside the spec, such as cleaning labels or rebalancing classes)."""

from __future__ import annotations

from service.report.contrast import Contrast
from service.report.diagnosis_models import Fix, Symptom
from service.report.wording import inline, metric_words, points

NAMES = {
    "learned_nothing": "The network learned nothing",
    "learning_rate_too_high": "Learning rate too high",
    "learning_rate_too_low": "Learning rate too low",
    "too_few_epochs": "Too few epochs",
    "few_updates": "Too few optimizer updates (batch too large for the epochs)",
    "underfitting": "Too little capacity (underfitting)",
    "overfitting": "Overfitting",
    "over_regularization": "Too much regularization",
    "harmful_augmentation": "Harmful augmentation",
    "class_imbalance": "Class imbalance",
    "class_collapse": "Classes the model does not learn",
    "unscaled_input": "Unscaled input",
    "label_noise": "Noisy training labels (or a split mismatch)",
    "few_samples": "Too few training samples",
    "factor_effect": "A better setting",
}

OUTSIDE_THE_SPEC = {
    "learned_nothing": (
        "search the learning rate over several decades in both directions, and check the labels "
        "and the input scaling"
    ),
    "class_imbalance": (
        "rebalance the training data (oversample the minority classes or collect more of them) or "
        "weight the loss by inverse class frequency"
    ),
    "class_collapse": (
        "look at the confusion matrix: check those classes' labels and samples, and give them "
        "more training data"
    ),
    "label_noise": (
        "find and correct the mislabelled training samples (confident learning on out-of-fold "
        "predictions, e.g. cleanlab); label smoothing softens them meanwhile"
    ),
    "few_samples": "collect more training data or augment it",
    "overfitting": (
        "more training data is the surest fix; otherwise regularize more strongly (dropout, L2, "
        "augmentation together) or shrink the model"
    ),
    "underfitting": "give the model more capacity or train it longer",
}


def cause_title(rule: str, best: Contrast | None, symptoms: list[Symptom]) -> str:
    head = NAMES.get(rule, rule.replace("_", " ").capitalize())
    if best is not None:
        if rule == "factor_effect":
            head = f"{best.name} is better"
        trouble = {"learned_nothing": "the baseline learned nothing", "diverged": "the baseline diverges"}
        seen = [trouble[s.rule] for s in symptoms if s.rule in trouble]
        of = f" of {metric_words(best.metric, short=True)}" if best.metric == "balanced_accuracy" else ""
        return f"{head}: {best.name} gains {points(best.delta)}{of}" + (f" ({seen[0]})" if seen else "")
    if symptoms:
        detail = symptoms[0].title
        label, _, rest = detail.partition(": ")
        if rest and label.lower() in head.lower():
            detail = rest  # "Overfitting: a 30-point gap" under the head "Overfitting"
        return f"{head}: {detail[:1].lower()}{detail[1:]}"
    return head


def cause_advice(rule: str, fix: Fix | None, try_next: list[Fix]) -> str:
    parts = []
    if fix is not None:
        of = f" of {metric_words(fix.metric, short=True)}" if fix.metric == "balanced_accuracy" else ""
        parts.append(f"set {inline(fix.spec)} (measured: {points(fix.delta or 0.0)}{of})")
    outside = OUTSIDE_THE_SPEC.get(rule)
    if outside:
        parts.append(outside)
    to_confirm = [f for f in try_next if not f.confirmed]
    untested = [f for f in try_next if f.confirmed]
    for f in to_confirm:
        parts.append(f"confirm {f.variant} ({inline(f.spec)}) on fresh seeds")
    if untested:
        parts.append(
            ("then try " if fix is not None or to_confirm else "try ")
            + "; ".join(inline(f.spec) for f in untested)
            + " (untested)"
        )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""

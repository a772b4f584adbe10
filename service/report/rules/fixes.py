"""A change's meaning: the cause a helping change repairs, and whether a comparison is fair."""

from __future__ import annotations

from typing import Any

from service.report.configs import flatten
from service.report.contrast import Contrast, StudyContrasts
from service.report.rules.thresholds import DECAYING_SCHEDULES, REGULARIZERS

FAIR_DATA_PATHS = ("dataset.scale",)
"""Dataset options that change how the same samples are fed, not which samples: a variant
changing only these is scored on the baseline's test set."""


def comparable(c: Contrast) -> bool:
    """Scored on the baseline's test set: the variant changes no dataset option that picks
    samples (split, size, imbalance, source)."""
    return not any(
        (path.startswith("dataset.") and not any(path.startswith(p) for p in FAIR_DATA_PATHS))
        or path == "training.train_fraction"  # a share of the training split: a learning curve
        for path in c.changes
    )


def _rate(flat: dict[str, Any]) -> float | None:
    return flat.get("optimizer.learning_rate")


def _capacity(config: dict[str, Any]) -> tuple[int, ...]:
    model = config.get("model", {})
    blocks, dense = model.get("conv_blocks") or [], model.get("dense") or []
    return (
        len(blocks),
        sum(b.get("convs", 1) for b in blocks),
        sum(b.get("filters", 0) for b in blocks),
        len(dense),
        sum(dense),
    )


def capacity_direction(study: StudyContrasts, c: Contrast) -> int | None:
    """+1 wider or deeper, -1 narrower or shallower, None when mixed or not only the model."""
    if not c.only("model.conv_blocks", "model.dense"):
        return None
    old, new = _capacity(study.config), _capacity(c.config)
    if new == old:
        return None
    if all(n >= o for n, o in zip(new, old, strict=True)):
        return 1
    if all(n <= o for n, o in zip(new, old, strict=True)):
        return -1
    return None


def rate_direction(study: StudyContrasts, c: Contrast) -> int | None:
    """-1 a lower learning rate or a decaying schedule at the same rate, +1 a higher rate."""
    if not c.only("optimizer.learning_rate", "schedule"):
        return None
    base, new = study.flat, flatten(c.config)
    old_rate, new_rate = _rate(base), _rate(new)
    if old_rate is None or new_rate is None:
        return None
    if new_rate > old_rate and c.only("optimizer.learning_rate"):
        return 1
    decays = (
        base.get("schedule.name") == "constant" and new.get("schedule.name") in DECAYING_SCHEDULES
    )
    return -1 if new_rate < old_rate or (new_rate == old_rate and decays) else None


def _grows(study: StudyContrasts, c: Contrast, path: str) -> int | None:
    if not c.only(path):
        return None
    old, new = study.flat.get(path), flatten(c.config).get(path)
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)) or old == new:
        return None
    return 1 if new > old else -1


def fix_rule(study: StudyContrasts, c: Contrast) -> str:
    """The cause a change that helps repairs."""
    rate = rate_direction(study, c)
    if rate is not None:
        return "learning_rate_too_high" if rate < 0 else "learning_rate_too_low"
    if _grows(study, c, "training.epochs") == 1:
        return "too_few_epochs"
    if _grows(study, c, "training.batch_size") == -1:
        return "few_updates"
    capacity = capacity_direction(study, c)
    if capacity is not None:
        return "underfitting" if capacity > 0 else "overfitting"
    if c.only("dataset.scale"):
        return "unscaled_input"
    if c.only("training.class_weight", "training.resample"):
        return "class_imbalance"
    if c.only(*REGULARIZERS):
        direction = c.direction()
        if c.only("augmentation") and direction == -1:
            return "harmful_augmentation"
        if direction == 1:
            return "overfitting"
        if direction == -1:
            return "over_regularization"
    return "factor_effect"


REMEDY = {
    "still_improving": ("too_few_epochs", "learning_rate_too_low", "few_updates"),
    "few_updates": ("too_few_epochs", "few_updates"),
    "underfitting": ("underfitting", "too_few_epochs"),
}
"""Symptoms with a direct remedy: the causes whose changes test it."""


def remedies(study: StudyContrasts, symptom: str, contrasts: list[Contrast]) -> list[Contrast]:
    """The variants among `contrasts` that apply `symptom`'s direct remedy (a longer run for a
    curve still rising, a bigger model or longer run for underfitting)."""
    wanted = REMEDY.get(symptom, ())
    return [c for c in contrasts if fix_rule(study, c) in wanted and _is_remedy(study, c)]


def _is_remedy(study: StudyContrasts, c: Contrast) -> bool:
    """fix_rule names what a change would repair if it helped; a remedy must push that way
    (more epochs, a bigger model, a higher rate, a smaller batch), which fix_rule already reads
    from the direction of the change, except for a capacity cut read as an overfitting fix."""
    return capacity_direction(study, c) != -1

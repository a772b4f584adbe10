"""The changes that test a cause: for each cause the report can name (the rules of
`service.report.diagnosis`), the variants of the baseline that would repair it, most direct
first. Which cause answers which symptom is the report's table (`CANDIDATES`); this module only
says how a cause is tested in the spec.
"""

from __future__ import annotations

import math
from typing import Any

from service.diagnose.models import StageVariant
from service.report.rules.thresholds import REGULARIZERS, TYPICAL_RATES

MIN_RATE, MAX_RATE = 1e-7, 10.0
"""Learning rates searched: the spec's upper bound (10), and a floor below which no optimizer
moves a float32 weight."""
DECADES = 3
"""Decades searched on each side of the baseline's rate; further until the range covers the
optimizer's usual range (TYPICAL_RATES), up to MAX_DECADES."""
MAX_DECADES = 6
MAX_EPOCHS = 10_000
LEARNING_CURVE = (0.25, 0.5)
"""Shares of the training split for the learning curve (the baseline is the 100% point)."""
MILD_AUGMENTATION = {"translation": 0.1, "zoom": 0.1}
AUGMENTATION_OFF = {
    "horizontal_flip": False,
    "vertical_flip": False,
    "rotation": 0.0,
    "zoom": 0.0,
    "translation": 0.0,
    "contrast": 0.0,
    "random_crop": 0,
}


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _variant(name: str, factor: str, overrides: dict[str, Any]) -> StageVariant:
    return StageVariant(name=name, factor=factor, overrides=overrides)


def rate_range(baseline: dict[str, Any], directions: tuple[int, ...]) -> list[StageVariant]:
    """Learning rates log-spaced by decades around the baseline's, down (-1) and/or up (+1),
    within (MIN_RATE, MAX_RATE]. Both directions: the rates nearest the middle of the
    optimizer's usual range first, since a network that learned nothing tells no direction."""
    rate = baseline["optimizer"]["learning_rate"]
    low, high = TYPICAL_RATES.get(baseline["optimizer"]["name"], (1e-4, 1e-1))
    middle = math.sqrt(low * high)
    found: list[tuple[float, StageVariant]] = []
    for direction in directions:
        for decade in range(1, MAX_DECADES + 1):
            previous = rate * 10.0 ** (direction * (decade - 1))
            covered = previous <= low if direction < 0 else previous >= high
            if decade > DECADES and covered:
                break
            value = _round(rate * 10.0 ** (direction * decade))
            if not MIN_RATE <= value <= MAX_RATE:
                break
            distance = abs(math.log10(value / middle)) if len(directions) > 1 else decade
            found.append(
                (
                    distance,
                    _variant(f"lr {value:g}", "learning_rate", {"optimizer.learning_rate": value}),
                )
            )
    return [variant for _, variant in sorted(found, key=lambda item: item[0])]


def _scaled_width(model: dict[str, Any], scale: float) -> dict[str, Any]:
    blocks = [{**b, "filters": max(1, round(b["filters"] * scale))} for b in model["conv_blocks"]]
    dense = [max(1, round(units * scale)) for units in model["dense"]]
    return {"model.conv_blocks": blocks, "model.dense": dense}


def _capacity(model: dict[str, Any]) -> list[StageVariant]:
    found = [
        _variant("double width", "width", _scaled_width(model, 2.0)),
        _variant("4x width", "width", _scaled_width(model, 4.0)),
    ]
    if model["conv_blocks"]:
        last = model["conv_blocks"][-1]
        deeper = [*model["conv_blocks"], {**last, "filters": last["filters"] * 2}]
        found.append(_variant("one more conv block", "depth", {"model.conv_blocks": deeper}))
    return found


def _epochs(training: dict[str, Any]) -> list[StageVariant]:
    return [
        _variant(f"epochs {epochs}", "epochs", {"training.epochs": epochs})
        for epochs in dict.fromkeys(min(MAX_EPOCHS, training["epochs"] * k) for k in (2, 4))
        if epochs > training["epochs"]
    ]


def _batches(training: dict[str, Any]) -> list[StageVariant]:
    batch = training["batch_size"]
    return [
        _variant(f"batch size {size}", "batch_size", {"training.batch_size": size})
        for size in dict.fromkeys(max(2, batch // k) for k in (4, 16))
        if size < batch
    ]


def _regularizers(baseline: dict[str, Any]) -> list[StageVariant]:
    model, training = baseline["model"], baseline["training"]
    found = []
    if model["dropout"] < 0.5:
        found.append(_variant("dropout 0.5", "dropout", {"model.dropout": 0.5}))
    if model["conv_dropout"] == 0:
        found.append(_variant("conv dropout 0.25", "dropout", {"model.conv_dropout": 0.25}))
    l2 = 1e-4 if not model["l2"] else _round(min(1.0, model["l2"] * 10))
    if l2 != model["l2"]:
        found.append(_variant(f"l2 {l2:g}", "l2", {"model.l2": l2}))
    if not any(value not in (False, 0, 0.0) for value in baseline["augmentation"].values()):
        augmentation = {**AUGMENTATION_OFF, **MILD_AUGMENTATION}
        found.append(
            _variant("augmentation (shift, zoom)", "augmentation", {"augmentation": augmentation})
        )
    if training["label_smoothing"] == 0:
        found.append(
            _variant("label smoothing 0.1", "label_smoothing", {"training.label_smoothing": 0.1})
        )
    return found


def _overfitting(baseline: dict[str, Any]) -> list[StageVariant]:
    found = _regularizers(baseline)
    found.append(_variant("half width", "width", _scaled_width(baseline["model"], 0.5)))
    if baseline["training"].get("train_fraction", 1.0) == 1.0:
        found += [
            _variant(
                f"{share:.0%} of training data",
                "learning_curve",
                {"training.train_fraction": share},
            )
            for share in LEARNING_CURVE
        ]
    return found


def _less_regularization(baseline: dict[str, Any]) -> list[StageVariant]:
    flat = {
        "model.dropout": baseline["model"]["dropout"],
        "model.conv_dropout": baseline["model"]["conv_dropout"],
        "model.l2": baseline["model"]["l2"],
        "training.label_smoothing": baseline["training"]["label_smoothing"],
        "optimizer.weight_decay": baseline["optimizer"].get("weight_decay", 0.0),
    }
    return [
        _variant(
            f"no {path.rsplit('.', 1)[-1].replace('_', ' ')}", path.rsplit(".", 1)[-1], {path: 0.0}
        )
        for path, value in flat.items()
        if path in REGULARIZERS and value
    ]


def _without_augmentation(baseline: dict[str, Any]) -> list[StageVariant]:
    enabled = [k for k, v in baseline["augmentation"].items() if v not in (False, 0, 0.0)]
    found = [
        _variant(
            f"no {layer.replace('_', ' ')}",
            "augmentation",
            {f"augmentation.{layer}": AUGMENTATION_OFF[layer]},
        )
        for layer in enabled
        if layer in AUGMENTATION_OFF
    ]
    if len(enabled) > 1:
        found.append(
            _variant("no augmentation", "augmentation", {"augmentation": dict(AUGMENTATION_OFF)})
        )
    return found


def _scaling(baseline: dict[str, Any]) -> list[StageVariant]:
    current = baseline["dataset"].get("scale", "auto")
    return [
        _variant(f"scale {mode}", "scale", {"dataset.scale": mode})
        for mode in ("auto", "standardize", "unit")
        if mode != current
    ]


def _class_balance(baseline: dict[str, Any]) -> list[StageVariant]:
    training = baseline["training"]
    found = []
    if training.get("class_weight") != "balanced":
        found.append(
            _variant(
                "balanced class weights", "class_weight", {"training.class_weight": "balanced"}
            )
        )
    if training.get("resample", "none") != "oversample":
        found.append(_variant("oversample", "resample", {"training.resample": "oversample"}))
    return found


def remedies(cause: str, baseline: dict[str, Any]) -> list[StageVariant]:
    """The variants that test `cause` (a CauseRule of the report), most direct first; [] for a
    cause the spec cannot test (or one already at its remedy)."""
    model, training = baseline["model"], baseline["training"]
    if cause == "learning_rate_too_high":
        found = rate_range(baseline, (-1,))
        if baseline["schedule"]["name"] == "constant":
            found.append(_variant("cosine decay", "schedule", {"schedule": {"name": "cosine"}}))
        return found
    if cause == "learning_rate_too_low":
        return rate_range(baseline, (1,))
    table = {
        "too_few_epochs": lambda: _epochs(training),
        "few_updates": lambda: _batches(training),
        "underfitting": lambda: _capacity(model),
        "overfitting": lambda: _overfitting(baseline),
        "over_regularization": lambda: _less_regularization(baseline),
        "harmful_augmentation": lambda: _without_augmentation(baseline),
        "unscaled_input": lambda: _scaling(baseline),
        "class_imbalance": lambda: _class_balance(baseline),
        "class_collapse": lambda: _class_balance(baseline),
        "label_noise": lambda: (
            [_variant("label smoothing 0.1", "label_smoothing", {"training.label_smoothing": 0.1})]
            if training["label_smoothing"] == 0
            else []
        ),
    }
    return table[cause]() if cause in table else []


SEARCHED = {
    "learning_rate_too_high": "lower learning rates",
    "learning_rate_too_low": "higher learning rates",
    "too_few_epochs": "more epochs",
    "few_updates": "smaller batches",
    "underfitting": "a wider and a deeper model",
    "overfitting": "each regularizer, a smaller model and a learning curve",
    "over_regularization": "removing each regularizer",
    "harmful_augmentation": "removing each augmentation layer",
    "unscaled_input": "the scaling options",
    "class_imbalance": "class weighting and oversampling",
    "class_collapse": "class weighting and oversampling",
    "label_noise": "label smoothing",
}
"""What the search tries for a cause, in the stage's reason."""

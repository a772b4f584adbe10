"""The planted-fault cases of bench/diagnosis.py: one study spec per fault family.

Each case is a small baseline (digits at 8x8 or generated shapes, a tiny CNN, a few epochs) with
one fault planted in it, the set of finding rule ids that count as naming that fault, and the
spec change that removes it (`fix`, used by `--verify` to show the fault is real). Equivalent
fixes count, as in the published evaluations: "too few epochs" accepts `learning_rate_too_low`
too, since both tell the user to train longer. A healthy case accepts no cause at all.

Rule ids are in the vocabulary of the staged diagnosis (issue 13) plus today's names where they
differ; "rule:text" accepts that rule only when its title or variants mention `text` (today's
generic `factor_effect` names over-regularization only when the variant that helps removes it).

Datasets that the spec options cannot express (noisy training labels, raw inputs in the
thousands, an imbalanced training set scored on a balanced test set) are .npz files that
`write_data` derives from scikit-learn's digits, with one fixed test split for all of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LR_SLOW = frozenset({"learning_rate_too_low", "too_few_epochs"})
"""Train longer: more epochs or a higher rate, the same advice."""


@dataclass(frozen=True)
class Case:
    name: str
    fault: str
    """The planted fault, in words."""
    data: str
    """digits or synthetic: what the bench's per-data medians group by."""
    spec: dict[str, Any]
    accepted: frozenset[str]
    """Rule ids whose top cause names the fault; empty for a healthy baseline."""
    fix: dict[str, Any] = field(default_factory=dict)
    """Dotted-path overrides that remove the fault (empty for a healthy baseline)."""

    @property
    def healthy(self) -> bool:
        return not self.accepted


DIGITS = {
    "dataset": {"kind": "digits", "validation_split": 0.15, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 32}], "dense": [64]},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "training": {"epochs": 15, "batch_size": 32},
    "ablation": {"strategy": "diagnose", "seeds": 3},
}
SHAPES = {
    "dataset": {
        "kind": "synthetic",
        "image_size": 16,
        "classes": 4,
        "samples_per_class": 400,
        "noise": 0.1,
        "validation_split": 0.15,
        "test_split": 0.25,
    },
    "model": {"conv_blocks": [{"filters": 16}, {"filters": 32}], "dense": [32]},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "training": {"epochs": 20, "batch_size": 32},
    "ablation": {"strategy": "diagnose", "seeds": 3},
}
# The .npz files (written by write_data) carry their own test set, so test_split does not apply.
NPZ = {"validation_split": 0.15}


def _spec(base: dict[str, Any], name: str, changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec["name"] = f"bench-{name.replace('_', '-')}"
    for path, value in changes.items():
        node = spec
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return spec


def _npz(file: str, **options: Any) -> dict[str, Any]:
    return {"kind": "npz", "path": f"{{data}}/{file}", **NPZ, **options}


def _case(name, fault, base, changes, accepted, fix=None) -> Case:
    data = "digits" if base is DIGITS else "synthetic"
    return Case(name, fault, data, _spec(base, name, changes), frozenset(accepted), fix or {})


CASES: list[Case] = [
    _case("healthy", "none (a plain healthy baseline)", DIGITS, {}, ()),
    _case(
        "healthy_inert_factors",
        "none (dropout 0.05, L2 1e-6 and a cosine decay that change nothing)",
        SHAPES,
        {"model.dropout": 0.05, "model.l2": 1e-6, "schedule": {"name": "cosine", "alpha": 0.5}},
        (),
    ),
    _case(
        "lr_too_high",
        "learning rate far too high (Adam 0.5)",
        DIGITS,
        {"optimizer.learning_rate": 0.5},
        ("learning_rate_too_high",),
        {"optimizer.learning_rate": 0.003},
    ),
    _case(
        "lr_too_high_sgd",
        "learning rate far too high (SGD 3.0, two conv blocks)",
        SHAPES,
        {"optimizer": {"name": "sgd", "learning_rate": 3.0, "momentum": 0.9}},
        ("learning_rate_too_high",),
        {"optimizer": {"name": "sgd", "learning_rate": 0.03, "momentum": 0.9}},
    ),
    _case(
        "lr_too_low",
        "learning rate far too low (Adam 1e-5)",
        SHAPES,
        {"optimizer.learning_rate": 1e-5},
        LR_SLOW,
        {"optimizer.learning_rate": 0.003},
    ),
    _case(
        "too_few_epochs",
        "too few epochs (2 at Adam 0.001)",
        DIGITS,
        {"training.epochs": 2, "optimizer.learning_rate": 0.001},
        LR_SLOW,
        {"training.epochs": 15},
    ),
    _case(
        "too_little_capacity",
        "too little capacity (2 filters, a dense layer of 3)",
        DIGITS,
        {"model.conv_blocks": [{"filters": 2}], "model.dense": [3]},
        ("underfitting",),
        {"model.conv_blocks": [{"filters": 32}], "model.dense": [64]},
    ),
    _case(
        "overfitting_small_train",
        "overfitting: 108 training samples, a wide CNN, 40 epochs",
        DIGITS,
        {
            "dataset.test_split": 0.92,
            "dataset.validation_split": 0.25,
            "model.conv_blocks": [{"filters": 32}, {"filters": 64}],
            "model.dense": [256],
            "training.epochs": 40,
        },
        ("overfitting", "few_samples"),
        {"dataset.test_split": 0.25, "dataset.validation_split": 0.15},
    ),
    _case(
        "harmful_augmentation",
        "harmful augmentation (vertical flips, rotations up to 180 degrees)",
        DIGITS,
        {"augmentation": {"vertical_flip": True, "rotation": 0.5}},
        ("harmful_augmentation",),
        {"augmentation": {}},
    ),
    _case(
        "class_imbalance",
        "class imbalance (training classes 135 down to 3 samples; balanced test set)",
        DIGITS,
        {"dataset": _npz("imbalanced.npz")},
        ("class_imbalance", "class_collapse"),
        {"dataset": _npz("resampled.npz")},
    ),
    _case(
        "label_noise",
        "label noise (half the training labels wrong; clean test labels)",
        DIGITS,
        {"dataset": _npz("noisy.npz"), "training.epochs": 30},
        ("label_noise",),
        {"dataset": _npz("clean.npz")},
    ),
    _case(
        "unscaled_input",
        "unscaled inputs (pixels 0..4000, scale: none)",
        DIGITS,
        {"dataset": _npz("unscaled.npz", scale="none")},
        ("unscaled_input",),
        {"dataset": _npz("unscaled.npz", scale="auto")},
    ),
    _case(
        "few_updates",
        "batch size too large for the epochs (batch 1024 x 4 epochs = 8 updates)",
        DIGITS,
        {"training.batch_size": 1024, "training.epochs": 4},
        ("few_updates", *LR_SLOW),
        {"training.batch_size": 32},
    ),
    _case(
        "over_regularization_l2",
        "over-strong regularization (L2 0.1)",
        DIGITS,
        {"model.l2": 0.1},
        ("over_regularization", "factor_effect:no l2"),
        {"model.l2": 0.0},
    ),
    _case(
        "over_regularization_dropout",
        "over-strong regularization (dropout 0.9 in the head, 0.5 after each conv block)",
        SHAPES,
        {"model.dropout": 0.9, "model.conv_dropout": 0.5},
        ("over_regularization", "factor_effect:no dropout"),
        {"model.dropout": 0.0, "model.conv_dropout": 0.0},
    ),
]
QUICK = ("lr_too_high", "healthy")


def build_spec(case: Case, data_dir: Path, epochs: int | None = None, seeds: int | None = None) -> dict:
    """The case's spec with its data paths resolved; `epochs`/`seeds` cap them (quick mode)."""
    spec = copy.deepcopy(case.spec)
    dataset = spec["dataset"]
    if dataset["kind"] == "npz":
        dataset["path"] = dataset["path"].format(data=data_dir)
    if epochs is not None:
        spec["training"]["epochs"] = min(spec["training"]["epochs"], epochs)
    if seeds is not None:
        spec["ablation"]["seeds"] = seeds
    return spec


def fixed_value(case: Case, data_dir: Path) -> dict[str, Any]:
    """`case.fix` with its data paths resolved (for `--verify`)."""
    fix = copy.deepcopy(case.fix)
    if "dataset" in fix and fix["dataset"].get("kind") == "npz":
        fix["dataset"]["path"] = fix["dataset"]["path"].format(data=data_dir)
    return fix


def write_data(data_dir: Path) -> None:
    """The .npz files the cases read, all derived from digits with one stratified test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]  # 0..16, as scikit-learn ships them
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    rng = np.random.default_rng(0)
    test = {"x_test": x_test, "y_test": y_test}
    data_dir.mkdir(parents=True, exist_ok=True)

    def save(name: str, xt: np.ndarray, yt: np.ndarray, **arrays: np.ndarray) -> None:
        np.savez(data_dir / name, x_train=xt, y_train=yt, **(arrays or test))

    save("clean.npz", x_train, y_train)
    # Half the training labels moved to another class (never their own), uniformly.
    noisy = y_train.copy()
    flip = rng.random(len(noisy)) < 0.5
    noisy[flip] = (noisy[flip] + rng.integers(1, 10, flip.sum())) % 10
    save("noisy.npz", x_train, noisy)
    save("unscaled.npz", x_train * 250.0, y_train, x_test=x_test * 250.0, y_test=y_test)
    # Class k keeps a 40**(-k/9) share of its samples: 135 of digit 0 down to 3 of digit 9.
    keep = []
    for label in range(10):
        rows = np.flatnonzero(y_train == label)
        count = max(3, round(len(rows) / 40 ** (label / 9)))
        keep.append(rng.permutation(rows)[:count])
    save("imbalanced.npz", x_train[np.concatenate(keep)], y_train[np.concatenate(keep)])
    # The fix: the same samples, each class oversampled to the largest class's count.
    largest = max(len(rows) for rows in keep)
    resampled = np.concatenate([rng.choice(rows, largest, replace=True) for rows in keep])
    save("resampled.npz", x_train[resampled], y_train[resampled])

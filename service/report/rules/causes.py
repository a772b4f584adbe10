"""Which causes a symptom can have: the tables the diagnosis ranks causes by and the staged
diagnosis plans its searches from (`service.diagnose.search`).

A symptom's CANDIDATES are the causes whose fix could repair it; FALLBACK is the cause it names
when no tested fix does; EXPLAINS says which symptoms another one accounts for.
"""

from __future__ import annotations

TRAINING_TROUBLE = ("learned_nothing", "diverged")
"""Symptoms of a baseline that does not train at all: whichever fix makes it train is the
cause, and without one the learning rate is the first suspect."""
CANDIDATES = {
    "learned_nothing": (
        "learning_rate_too_high",
        "learning_rate_too_low",
        "unscaled_input",
        "few_updates",
        "too_few_epochs",
        "over_regularization",
        "harmful_augmentation",
        "underfitting",
    ),
    "underfitting": (
        "underfitting",
        "too_few_epochs",
        "learning_rate_too_low",
        "learning_rate_too_high",
        "few_updates",
        "over_regularization",
        "harmful_augmentation",
        "unscaled_input",
    ),
    "overfitting": ("overfitting",),
    "still_improving": ("too_few_epochs", "learning_rate_too_low", "few_updates"),
    "few_updates": ("few_updates", "too_few_epochs", "learning_rate_too_low"),
    "oscillating_loss": ("learning_rate_too_high",),
    "class_imbalance": ("class_imbalance",),
    "class_collapse": ("class_collapse", "class_imbalance"),
}
CANDIDATES["diverged"] = CANDIDATES["learned_nothing"]
FALLBACK = {
    "learned_nothing": "learned_nothing",
    "diverged": "learning_rate_too_high",
    "oscillating_loss": "learning_rate_too_high",
    "underfitting": "underfitting",
    "overfitting": "overfitting",
    "still_improving": "too_few_epochs",
    "few_updates": "few_updates",
    "class_collapse": "class_collapse",
    "class_imbalance": "class_imbalance",
    "test_above_validation": "label_noise",
    "unscaled_input": "unscaled_input",
}
"""The cause a symptom names when no tested fix repairs it."""
EXPLAINS = {
    "unscaled_input": ("learned_nothing", "diverged", "underfitting", "oscillating_loss"),
    "diverged": ("learned_nothing",),
    "few_updates": ("learned_nothing", "underfitting", "still_improving"),
    "test_above_validation": ("underfitting", "overfitting"),
}
"""A symptom that explains others: unscaled input explains a baseline that does not train,
noisy labels explain a model that cannot fit (or memorizes) its training set."""

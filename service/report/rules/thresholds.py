"""Thresholds of the diagnosis rules."""

GAP_THRESHOLD = 0.05
"""Train minus validation accuracy above which the baseline counts as overfitting."""
LOW_TRAIN_ACCURACY = 0.90
"""Final training accuracy below which the baseline counts as underfitting."""
RISING_WINDOW = 3
RISING_SLOPE = 0.005
"""Validation accuracy still rising: slope over the last RISING_WINDOW epochs, per epoch."""
LOSS_INCREASE = 0.01
OSCILLATING_SHARE = 1 / 3
LATE_LOSS_MARGIN = 1.25
"""Oscillating training loss: more than OSCILLATING_SHARE of the epoch-to-epoch changes rise by
more than LOSS_INCREASE (relative), or the last loss exceeds LATE_LOSS_MARGIN x the minimum."""

REGULARIZERS = (
    "model.dropout",
    "model.conv_dropout",
    "model.l2",
    "training.label_smoothing",
    "optimizer.weight_decay",
    "augmentation",
)
DECAYING_SCHEDULES = frozenset({"exponential_decay", "cosine", "piecewise", "reduce_on_plateau"})

MIN_GAIN = 0.01
"""A fix must recover at least this much test accuracy (1 point) to be claimed as a cause;
smaller significant gains are not what makes a baseline's accuracy low."""
MATERIAL_EFFECT = 0.03
"""The effect size that matters: a study that cannot detect 3 points says so up front."""
CHANCE_MARGIN = 0.05
"""Learned nothing: test accuracy within max(this, 3 binomial standard errors) of chance."""
CHANCE_LOSS_SHARE = 0.8
"""... and the final training loss at least this share of ln K (or training accuracy at chance)."""
COLLAPSE_RECALL = 0.35
"""A class is collapsed when its test recall is below this share of the other classes' mean."""
FEW_UPDATES = 200
"""Optimizer updates in all (steps per epoch x epochs) below which training is too short."""
SMALL_VALIDATION = 100
"""Validation splits smaller than this measure the train-validation gap too noisily: the gap
is measured against the test split instead, and the report says so."""
TEST_ABOVE_VALIDATION = 0.03
"""Test accuracy above validation accuracy by more than this (and beyond noise) points to
noisy training labels or a split mismatch."""
IMBALANCE_RATIO = 3.0
"""A class with this many times fewer training samples than the largest is a minority class."""
UNSCALED_MAX = 1.5
"""Raw inputs above this, fed with scale 'none', count as unscaled (e.g. 0..255 pixels)."""
MIN_SYMPTOM_STAKE = 0.02
"""A symptom with no fix that helps is claimed as a cause only when it puts at least 2 points
of test accuracy at stake (training that fails outright is always claimed)."""
TYPICAL_RATES = {
    "adam": (1e-4, 1e-2),
    "adamw": (1e-4, 1e-2),
    "rmsprop": (1e-4, 1e-2),
    "sgd": (1e-3, 0.3),
}
"""Learning rates an engineer would call sane per optimizer. A baseline that learns nothing at a
rate more than RATE_MARGIN times outside this range, with no tested fix, is called too high or
too low at a glance."""
RATE_MARGIN = 3.0
FALLING_SHARE = 0.8
FALLING_DROP = 0.02
"""A training loss that falls in at least FALLING_SHARE of the epochs, by FALLING_DROP
(relative) in all: training moves, slowly."""
GROSS_UNSCALED_MAX = 100.0
"""Raw inputs above this with scale 'none' are a scaling error whatever the training shows:
the accuracy the model fails to fit on its training set is at stake."""

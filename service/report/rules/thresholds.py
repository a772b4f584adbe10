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
DIVERGED_VARIANT_MAGNITUDE = 0.005
"""Rank of "variant X diverged in every seed": it says what not to do, not what is wrong."""
REMOVAL_WEIGHT = 0.5
"""Overfitting shown only by removing regularization (or by the gap alone) ranks at half weight."""

REGULARIZERS = (
    "model.dropout",
    "model.conv_dropout",
    "model.l2",
    "training.label_smoothing",
    "optimizer.weight_decay",
    "augmentation",
)
DECAYING_SCHEDULES = frozenset({"exponential_decay", "cosine", "piecewise", "reduce_on_plateau"})

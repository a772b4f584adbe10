"""The diagnosis rules: each turns significant evidence about the baseline into one finding.

A rule reads what variants changed (`Contrast.changes`), their comparisons with the baseline,
and the baseline's curves. A variant backs at most one finding: rules run in the order of
`RULES`, each skipping variants an earlier one claimed, and `factor_effect` names whatever
significant effect is left. Thresholds are in `thresholds.py`.
"""

from service.report.rules.factors import factor_effect, harmful_augmentation
from service.report.rules.fit import overfitting, underfitting
from service.report.rules.learning_rate import learning_rate_too_high, learning_rate_too_low

RULES = (
    learning_rate_too_high,
    learning_rate_too_low,
    overfitting,
    underfitting,
    harmful_augmentation,
    factor_effect,
)

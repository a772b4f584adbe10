"""Which cause a change from the baseline speaks to, read from what it changed.

A variant that significantly helps is a fix; what it changed (a lower learning rate, more
dropout, a wider model, fewer augmentations) names the cause it repairs. The same reading tells
which variants tested a symptom's direct remedy, so a symptom whose remedy was tried without a
gain is shown but not claimed. Thresholds are in `thresholds.py`.
"""

from service.report.rules.fixes import comparable, fix_rule, remedies

__all__ = ["comparable", "fix_rule", "remedies"]

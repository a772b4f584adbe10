"""How a symptom reads the baseline's seeds: a run's final-epoch value, and a one-sided t-test
across seeds that counts the binomial noise of the split they are all scored on."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from service.report.study_data import RunRecord


def final_value(run: RunRecord, field: str) -> float | None:
    """The run's last-epoch `field` (`loss`, `val_accuracy` ...); None when absent or not finite."""
    history = run.metrics.history if run.metrics else []
    value = getattr(history[-1], field) if history else None
    return value if value is not None and math.isfinite(value) else None


def one_sided_p(values: np.ndarray, shared_var: float, threshold: float) -> float | None:
    """p of a one-sided t-test that the mean of `values` exceeds `threshold`. `shared_var` is
    the binomial noise of a split every seed is scored on: common to all seeds, it does not
    average out, so it adds to the mean's variance undivided."""
    if len(values) < 2:
        return None
    seed_var = float(values.var(ddof=1)) if np.ptp(values) else 0.0
    var = seed_var / len(values) + shared_var
    if var <= 0:
        return None
    t = (float(values.mean()) - threshold) / math.sqrt(var)
    return float(sps.t.sf(t, len(values) - 1))

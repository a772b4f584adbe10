"""The data learning curve's figure: accuracy against the share of the training split.

Test accuracy is the curve that answers "would more data help?": each seed a point, the mean a
line, its 95% interval a band. Validation and final training accuracy are drawn beside it
(mean lines, seeds as small points) when the runs stored them; the gap between training and the
others closing as data grows is what more data buys an overfitting model.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from service.report.analysis_models import CurvePoint, LearningCurve
from service.report.learning_curve import share
from service.report.plot_style import TEST, TRAIN, VALIDATION, wrap_title

JITTER = 0.03
"""Seeds of one share are spread this far apart on the log2 axis, so equal values stay visible."""


def data_learning_curve(curve: LearningCurve) -> Figure:
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    x = np.array([p.fraction for p in curve.points], dtype=float)
    series = [
        ("test", TEST, "-", "o", lambda p: p.test_values, lambda p: p.test_accuracy.mean),
        ("validation", VALIDATION, "--", "s", lambda p: p.val_values, lambda p: p.val_accuracy.mean),
        ("training", TRAIN, ":", "^", lambda p: p.train_values, lambda p: p.train_accuracy.mean),
    ]
    for label, color, style, marker, values, mean in series:
        means = np.array([np.nan if mean(p) is None else 100 * mean(p) for p in curve.points])
        if np.all(np.isnan(means)):
            continue  # not stored by these runs
        test = label == "test"
        for p in curve.points:
            seeds = 100 * np.asarray(values(p), dtype=float)
            spread = p.fraction * 2 ** (JITTER * (np.arange(len(seeds)) - (len(seeds) - 1) / 2))
            ax.scatter(spread, seeds, s=22 if test else 10, color=color, alpha=0.55 if test else 0.35,
                       marker=marker, linewidths=0)  # fmt: skip
        ax.plot(x, means, style, color=color, marker=marker, linewidth=2 if test else 1.4,
                markersize=6 if test else 4, label=f"{label} (mean of seeds)")  # fmt: skip
        if test:
            _band(ax, x, curve.points, color)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [_tick(p) for p in curve.points])
    ax.minorticks_off()
    ax.set_xlim(x.min() / 2**0.35, x.max() * 2**0.35)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 101.0))
    ax.set_xlabel("share of the training split (training samples)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    ax.set_title(
        wrap_title("Learning curve: accuracy against training data", 80)
        + "\n"
        + wrap_title(curve.statement[:1].upper() + curve.statement[1:], 95),
        loc="left",
        fontsize=10,
    )
    return figure


def _band(ax, x: np.ndarray, points: list[CurvePoint], color: str) -> None:
    """The test accuracy's 95% interval at each share, joined into a band."""
    low = [p.test_accuracy.ci_low for p in points]
    high = [p.test_accuracy.ci_high for p in points]
    if any(v is None for v in low + high):
        return  # a share with one seed has no interval
    ax.fill_between(x, 100 * np.array(low), 100 * np.array(high), color=color, alpha=0.15,
                    linewidth=0, label="test 95% CI")  # fmt: skip


def _tick(point: CurvePoint) -> str:
    return share(point.fraction) + (f"\n({point.samples})" if point.samples is not None else "")

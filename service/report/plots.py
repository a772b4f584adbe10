"""The report's figures, as PNG bytes keyed by file name (`plots/{name}` in the report).

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot: no
global backend switch, no display, and separate figures can be drawn from several threads.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from service.report.formatting import best_variant, find_variant, plot_names, points
from service.report.labels import label as short_label
from service.report.models import Summary
from service.report.plot_style import (
    BASELINE,
    DPI,
    HELPS,
    HURTS,
    NEUTRAL,
    TRAIN,
    VALIDATION,
    cut_text,
    wrap_title,
)
from service.report.study_data import StudyData
from service.report.variant_models import VariantStats

ANNOTATE_CLASSES = 15
"""Confusion matrices with more classes than this drop the per-cell numbers."""


def render_plots(summary: Summary, data: StudyData) -> dict[str, bytes]:
    """Every plot of the report (see `formatting.plot_names`) as PNG bytes."""
    plots = {
        "test_accuracy.png": _png(_test_accuracy(summary)),
        "learning_curves.png": _png(_learning_curves(summary)),
        "train_val_gap.png": _png(_train_val_gap(summary)),
        "confusion_baseline.png": _png(_confusion(summary, data, summary.baseline, "Baseline")),
    }
    best = best_variant(summary)
    names = plot_names(summary)
    if "confusion_best.png" in names and best is not None:
        plots["confusion_best.png"] = _png(_confusion(summary, data, best.name, "Best variant"))
    from service.report.curve_plots import data_learning_curve
    from service.report.grid_plots import factor_importance, grid_heatmap

    if "data_learning_curve.png" in names and summary.learning_curve is not None:
        plots["data_learning_curve.png"] = _png(data_learning_curve(summary.learning_curve))

    if "grid_heatmap.png" in names and summary.factorial is not None:
        plots["grid_heatmap.png"] = _png(grid_heatmap(summary.factorial))
    if "factor_importance.png" in names and summary.factorial is not None:
        plots["factor_importance.png"] = _png(factor_importance(summary.factorial))
    return plots


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _bounded(ax, low: float, high: float) -> None:
    """Keep the x axis inside what the metric can take (an accuracy is 0 to 100%)."""
    left, right = ax.get_xlim()
    ax.set_xlim(max(left, low), min(right, high))


def _tone(summary: Summary, variant: VariantStats) -> str:
    if variant.name == summary.baseline:
        return BASELINE
    comparison = variant.vs_baseline
    if comparison is not None and comparison.significant:
        return HELPS if comparison.delta > 0 else HURTS
    return NEUTRAL


# Test accuracy and the train-validation gap: one row per variant, a point with its CI


def _interval_chart(
    summary: Summary, metric: str, title: str, xlabel: str, zero_line: bool
) -> Figure:
    variants = summary.variants
    figure = Figure(figsize=(8.5, 1.2 + 0.38 * max(len(variants), 1)), layout="constrained")
    ax = figure.add_subplot()
    rows = np.arange(len(variants))
    for row, variant in zip(rows, variants, strict=True):
        stats = getattr(variant, metric)
        color = _tone(summary, variant)
        if stats.mean is None:
            ax.text(
                0.01,
                row,
                "no result",
                transform=ax.get_yaxis_transform(),
                va="center",
                color=NEUTRAL,
                style="italic",
            )
            continue
        mean = 100 * stats.mean
        if stats.ci_low is not None and stats.ci_high is not None:
            ax.errorbar(
                mean,
                row,
                xerr=[[mean - 100 * stats.ci_low], [100 * stats.ci_high - mean]],
                fmt="none",
                ecolor=color,
                elinewidth=2,
                capsize=4,
            )
        ax.plot(
            mean, row, "o", color=color, markersize=8 if variant.name == summary.baseline else 6
        )
        comparison = variant.vs_baseline
        if (
            metric == "test_accuracy"
            and comparison is not None
            and variant.name != summary.baseline
        ):
            mark = " *" if comparison.significant else ""
            balanced = " balanced acc." if comparison.metric == "balanced_accuracy" else ""
            ax.annotate(
                f"{points(comparison.delta)}{balanced}{mark}",
                (mean, row),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=color,
            )
    baseline = find_variant(summary, summary.baseline)
    reference = getattr(baseline, metric).mean if baseline is not None else None
    if reference is not None:
        ax.axvline(
            100 * reference,
            color=BASELINE,
            linestyle="--",
            linewidth=1,
            alpha=0.7,
        )
    if zero_line:
        ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(
        rows,
        [
            cut_text(short_label(summary, v.name))
            + ("" if v.name != summary.baseline or "baseline" in v.name else " (baseline)")
            for v in variants
        ],
    )
    ax.set_ylim(len(variants) - 0.4, -0.6)
    for tick, variant in zip(ax.get_yticklabels(), variants, strict=True):
        tick.set_color(_tone(summary, variant))
        if variant.name == summary.baseline:
            tick.set_fontweight("bold")
    ax.set_xlabel(xlabel)
    ax.set_title(wrap_title(title, 90), loc="left", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.08)
    _bounded(ax, -100.0 if zero_line else 0.0, 100.0)
    return figure


def _test_accuracy(summary: Summary) -> Figure:
    return _interval_chart(
        summary,
        "test_accuracy",
        "Test accuracy: mean and 95% CI (dashed: baseline mean; * significant)",
        "test accuracy (%)",
        zero_line=False,
    )


def _train_val_gap(summary: Summary) -> Figure:
    return _interval_chart(
        summary,
        "train_val_gap",
        "Final train − validation accuracy: mean and 95% CI (dashed: baseline mean)",
        "gap (percentage points)",
        zero_line=True,
    )


# Learning curves: per variant, accuracy above loss, train vs validation, seeds as a band


def _learning_curves(summary: Summary) -> Figure:
    variants = summary.variants or []
    columns = min(max(len(variants), 1), 3)
    rows = max(math.ceil(len(variants) / columns), 1)
    figure = Figure(figsize=(3.6 * columns + 0.4, 3.9 * rows), layout="constrained")
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[3, 2] * rows)
    legend = None
    for index, variant in enumerate(variants):
        row, column = divmod(index, columns)
        accuracy_ax = figure.add_subplot(grid[2 * row, column])
        loss_ax = figure.add_subplot(grid[2 * row + 1, column], sharex=accuracy_ax)
        accuracy_ax.set_title(
            wrap_title(short_label(summary, variant.name), 40),
            fontsize=10,
            loc="left",
            color=_tone(summary, variant),
        )
        _curve_panel(accuracy_ax, loss_ax, variant)
        if legend is None and variant.curves.epochs:  # one legend, on the first panel with curves
            legend = accuracy_ax.legend(fontsize=7, loc="lower right", frameon=False)
    return figure


def _series(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _curve_panel(accuracy_ax, loss_ax, variant: VariantStats) -> None:
    curves = variant.curves
    accuracy_ax.tick_params(labelbottom=False, labelsize=8)
    loss_ax.tick_params(labelsize=8)
    accuracy_ax.set_ylabel("accuracy (%)", fontsize=8)
    loss_ax.set_ylabel("loss", fontsize=8)
    loss_ax.set_xlabel("epoch", fontsize=8)
    if not curves.epochs:
        accuracy_ax.set_yticks([])
        accuracy_ax.set_ylabel("")
        loss_ax.set_axis_off()
        accuracy_ax.text(
            0.5,
            0.5,
            "no result",
            transform=accuracy_ax.transAxes,
            ha="center",
            va="center",
            color=NEUTRAL,
            style="italic",
        )
        return
    epochs = np.array(curves.epochs, dtype=float)
    pairs = [
        (accuracy_ax, curves.accuracy_mean, curves.accuracy_std, TRAIN, "-", "train", 100),
        (
            accuracy_ax,
            curves.val_accuracy_mean,
            curves.val_accuracy_std,
            VALIDATION,
            "--",
            "validation",
            100,
        ),
        (loss_ax, curves.loss_mean, curves.loss_std, TRAIN, "-", "train", 1),
        (loss_ax, curves.val_loss_mean, curves.val_loss_std, VALIDATION, "--", "validation", 1),
    ]
    for ax, mean_values, std_values, color, style, label, scale in pairs:
        mean = scale * _series(mean_values)
        if np.all(np.isnan(mean)):
            continue
        std = scale * np.nan_to_num(_series(std_values))
        ceiling = 100.0 if scale == 100 else np.inf  # a band of an accuracy stays in [0, 100]
        marker = "o" if len(epochs) <= 3 else None  # a line of one or two points is invisible
        ax.plot(
            epochs,
            mean,
            style,
            color=color,
            linewidth=1.6,
            marker=marker,
            markersize=4,
            label=label,
        )
        low, high = np.clip(mean - std, 0, ceiling), np.clip(mean + std, 0, ceiling)
        ax.fill_between(epochs, low, high, color=color, alpha=0.18, linewidth=0)
    accuracy_ax.set_ylim(0, 101)
    losses = np.concatenate([_series(curves.loss_mean), _series(curves.val_loss_mean)])
    losses = losses[np.isfinite(losses) & (losses > 0)]
    if losses.size and losses.max() / losses.min() > 50:
        loss_ax.set_yscale("log")  # a diverging or very fast-falling loss would flatten the rest
    for ax in (accuracy_ax, loss_ax):
        ax.grid(alpha=0.3)
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) == 1:
        accuracy_ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


# Confusion matrices: summed over the variant's succeeded seeds, normalized per true class


def _confusion(summary: Summary, data: StudyData, name: str, role: str) -> Figure:
    record = next((v for v in data.variants if v.name == name), None)
    matrices, class_names = [], []
    for run in record.runs if record is not None else []:
        if run.state != "succeeded" or run.metrics is None:
            continue
        matrix = np.array(run.metrics.test.confusion_matrix, dtype=float)
        if matrices and matrix.shape != matrices[0].shape:
            continue  # a run on a different class set cannot be added up
        matrices.append(matrix)
        class_names = class_names or list(run.metrics.class_names)
    stats = find_variant(summary, name)
    title = wrap_title(f"{role}: {short_label(summary, name)}", 60)
    if not matrices:
        figure = Figure(figsize=(5, 2), layout="constrained")
        ax = figure.add_subplot()
        ax.set_axis_off()
        ax.set_title(title, loc="left", fontsize=11)
        ax.text(0.5, 0.5, "no result", ha="center", va="center", color=NEUTRAL, style="italic")
        return figure
    total = np.sum(matrices, axis=0)
    support = total.sum(axis=1, keepdims=True)
    normalized = np.divide(total, support, out=np.zeros_like(total), where=support > 0)
    classes = normalized.shape[0]
    if len(class_names) != classes:
        class_names = [str(i) for i in range(classes)]
    side = min(2.8 + 0.24 * classes, 14.0)
    figure = Figure(figsize=(side + 1.0, side + 0.4), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true class")
    step = max(1, math.ceil(classes / 40))
    ticks = np.arange(0, classes, step)
    labelsize = 8 if classes <= 15 else 7 if classes <= 40 else 6
    ax.set_xticks(
        ticks,
        [cut_text(class_names[i], 14) for i in ticks],
        rotation=90 if classes > 10 else 0,
        fontsize=labelsize,
    )
    ax.set_yticks(ticks, [cut_text(class_names[i], 14) for i in ticks], fontsize=labelsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = (
        f", test accuracy {100 * stats.test_accuracy.mean:.1f}%"
        if stats and stats.test_accuracy.mean is not None
        else ""
    )
    ax.set_title(
        f"{title}\n{len(matrices)} seed{'s' if len(matrices) != 1 else ''}{accuracy}",
        loc="left",
        fontsize=10,
    )
    if classes <= ANNOTATE_CLASSES:
        for (i, j), value in np.ndenumerate(normalized):
            if total[i, j]:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7 if classes > 10 else 8,
                    color="white" if value > 0.55 else "black",
                )
    return figure

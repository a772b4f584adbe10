"""A grid's figures: the cell means of a two-factor grid as an annotated heatmap, and each
factor's and interaction's share of the variance for larger grids (`factorial`'s ANOVA)."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from service.report.analysis_models import Factorial
from service.report.plot_style import HELPS, NEUTRAL, cut_text, wrap_title


def _ticks(labels: list[str], width: int, lines: int = 3) -> list[str]:
    """Tick labels wrapped to `lines` lines of `width` characters; labels that still read the
    same once cut are numbered, so no two ticks look alike."""
    wrapped = []
    for text in labels:
        parts = textwrap.wrap(text, width) or [" "]
        if len(parts) > lines:
            parts = parts[:lines]
            parts[-1] = parts[-1][: width - 1] + "…"
        wrapped.append("\n".join(parts).replace("$", r"\$"))
    if len(set(wrapped)) < len(wrapped):
        wrapped = [f"{index}: {text}" for index, text in enumerate(wrapped, 1)]
    return wrapped


def grid_heatmap(factorial: Factorial) -> Figure:
    """Mean test accuracy per cell of a two-factor grid, annotated (empty cells say so)."""
    first, second = factorial.factors[0], factorial.factors[1]
    rows, columns = [lv.level for lv in first.levels], [lv.level for lv in second.levels]
    means = np.full((len(rows), len(columns)), np.nan)
    seeds = np.zeros((len(rows), len(columns)), dtype=int)
    for cell in factorial.cells:
        i, j = rows.index(cell.levels[0]), columns.index(cell.levels[1])
        if cell.mean is not None:
            means[i, j], seeds[i, j] = 100 * cell.mean, cell.seeds
    width = min(3.0 + 1.1 * len(columns), 12.0)
    figure = Figure(figsize=(width, 2.0 + 0.65 * len(rows)), layout="constrained")
    ax = figure.add_subplot()
    shown = means[np.isfinite(means)]
    low, high = (shown.min(), shown.max()) if shown.size else (0.0, 100.0)
    image = ax.imshow(means, cmap="viridis", vmin=low, vmax=max(high, low + 1e-6), aspect="auto")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="test accuracy (%)")
    middle = (low + high) / 2
    for (i, j), value in np.ndenumerate(means):
        text = f"{value:.1f}%\nn={seeds[i, j]}" if np.isfinite(value) else "no result"
        colour = "white" if not np.isfinite(value) or value < middle else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(columns)), _ticks(columns, 18), fontsize=7)
    ax.set_yticks(range(len(rows)), _ticks(rows, 24), fontsize=7)
    ax.set_xlabel(wrap_title(second.factor, 60), fontsize=9)
    ax.set_ylabel(wrap_title(first.factor, 30), fontsize=9)
    ax.set_title(wrap_title("Mean test accuracy per cell (n: seeds)", 60), loc="left", fontsize=11)
    return figure


def factor_importance(factorial: Factorial) -> Figure:
    """Each factor's and each two-way interaction's share of the variance across runs."""
    names = [f.factor for f in factorial.factors]
    short = {n: n for n in names}
    if any(len(n) > 30 for n in names):  # long names as F1, F2 ... with a key under the axis
        short = {n: f"F{i}" for i, n in enumerate(names, 1)}
    terms = [(short[f.factor], f.eta_squared, f.p_value) for f in factorial.factors]
    terms += [
        (" × ".join(short[n] for n in i.factors), i.eta_squared, i.p_value)
        for i in factorial.interactions
    ]
    terms = sorted(terms, key=lambda t: -(t[1] or 0.0))
    figure = Figure(figsize=(8.5, 1.4 + 0.4 * len(terms) + 0.2 * len(names)), layout="constrained")
    ax = figure.add_subplot()
    shares = [100 * (share or 0.0) for _, share, _ in terms]
    colours = [HELPS if p is not None and p < 0.05 else NEUTRAL for _, _, p in terms]
    ax.barh(range(len(terms)), shares, color=colours)
    ax.set_yticks(range(len(terms)), _ticks([name for name, _, _ in terms], 44, 2), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    key = [f"{code}: {cut_text(name, 90)}" for name, code in short.items() if code != name]
    ax.set_xlabel("\n".join(["share of the variance across runs (eta squared, %)", *key]))
    ax.set_title(
        wrap_title("What the grid's factors explain (green: p < 0.05 in the ANOVA)", 90),
        loc="left",
        fontsize=11,
    )
    ax.grid(axis="x", alpha=0.3)
    return figure

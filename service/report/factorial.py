"""A `grid` study read as a factorial design: main effects, two-way interactions, variance shares.

A grid crosses every level of every factor, so it answers what cell-by-cell contrasts cannot:
does dropout matter averaged over the learning rates tried, and does its effect depend on the
rate? Each succeeded run's test accuracy is one observation of its cell (seeds are replicates),
fitted by ordinary least squares (statsmodels) with each factor's main effect and every two-way
interaction, in treatment coding. From the fit:
- a Type II ANOVA per term (F, p, and eta squared: its sum of squares over the total);
- each factor's main effect against the baseline's own level: the model's cell means at the
  level minus those at the baseline's level, averaged over every level of the other factors,
  with its t interval and p (Benjamini-Hochberg over the grid's main-effect contrasts).
Missing cells or unreplicated cells leave the interactions inestimable: the model falls back to
main effects only and says so. A factor whose levels lack the baseline's own setting has no main
effect against the baseline, and the report says why.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy import stats as sps

from service.report.analysis_models import FactorEffect, Factorial, GridCell, Interaction, LevelMean, MainEffect
from service.report.grid import Cell, GridFactor, grid_cells, grid_factors
from service.report.study_data import StudyData


def analyse_grid(data: StudyData, alpha: float = 0.05) -> Factorial | None:
    """The factorial analysis of a grid study; None when the study is not a grid."""
    ablation = data.spec.get("ablation") or {}
    if ablation.get("strategy") != "grid" or not ablation.get("factors") or not data.variants:
        return None
    factors = grid_factors(data)
    cells = grid_cells(data, factors)
    return fit(factors, cells, alpha)


# The linear model


def _columns(factors: list[GridFactor], two_way: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Design columns as (term, levels): term 'A' or 'A:B' by factor index; treatment coding
    with each factor's first level as the reference."""
    columns: list[tuple[str, tuple[int, ...]]] = [("", ())]
    for i, factor in enumerate(factors):
        columns += [(str(i), (level,)) for level in range(1, len(factor.levels))]
    if two_way:
        for i, j in itertools.combinations(range(len(factors)), 2):
            for a in range(1, len(factors[i].levels)):
                for b in range(1, len(factors[j].levels)):
                    columns.append((f"{i}:{j}", (a, b)))
    return columns


def _row(levels: tuple[int, ...], columns: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    row = np.zeros(len(columns))
    for index, (term, wanted) in enumerate(columns):
        if term == "":
            row[index] = 1.0
        else:
            members = [int(t) for t in term.split(":")]
            row[index] = float(all(levels[m] == w for m, w in zip(members, wanted, strict=True)))
    return row


def _design(cells: list[Cell], columns) -> tuple[np.ndarray, np.ndarray]:
    rows, y = [], []
    for cell in cells:
        for accuracy in cell.accuracies:
            rows.append(_row(cell.levels, columns))
            y.append(accuracy)
    return np.array(rows).reshape(len(rows), len(columns)), np.array(y, dtype=float)


def _estimable(x: np.ndarray) -> bool:
    return x.shape[0] > x.shape[1] and np.linalg.matrix_rank(x) == x.shape[1]


def _ssr(x: np.ndarray, y: np.ndarray, keep: list[int]) -> float:
    from statsmodels.regression.linear_model import OLS

    return float(OLS(y, x[:, keep]).fit().ssr)


def fit(factors: list[GridFactor], cells: list[Cell], alpha: float = 0.05) -> Factorial:
    """Fit the grid's linear model and read its ANOVA, main effects and interactions."""
    from statsmodels.regression.linear_model import OLS

    notes = _design_notes(factors, cells)
    model = "two-way" if len(factors) > 1 else "additive"
    columns = _columns(factors, two_way=model == "two-way")
    x, y = _design(cells, columns)
    if model == "two-way" and not _estimable(x):
        notes.append(
            "The interactions cannot be estimated (a cell has no result, or no cell has a "
            "second seed): main effects come from a model without interactions."
        )
        model = "additive"
        columns = _columns(factors, two_way=False)
        x, y = _design(cells, columns)
    if not _estimable(x):
        notes.append(
            "Too few succeeded runs to estimate the factors' effects: every level needs a "
            "result and the model needs at least one degree of freedom left for the noise."
        )
        return Factorial(
            factors=[
                _factor_effect(factors, i, cells, None, columns, None) for i in range(len(factors))
            ],
            main_effects=[],
            interactions=[],
            cells=_grid_cells(factors, cells),
            model="none",
            residual_df=0,
            notes=notes,
        )
    result = OLS(y, x).fit()
    anova = _anova(x, y, columns, result.ssr, int(result.df_resid))
    effects = [
        _factor_effect(factors, i, cells, result, columns, anova.get(str(i)))
        for i in range(len(factors))
    ]
    for factor in factors:
        if factor.baseline_level is None:
            notes.append(
                f"{factor.name}: the baseline's own setting is not among the grid's levels "
                f"({', '.join(factor.labels)}), so its main effect cannot be estimated against "
                "the baseline; the ANOVA still says whether it matters among the levels tried."
            )
    main = _main_effects(factors, result, columns, alpha)
    interactions = [
        Interaction(
            factors=[factors[int(m)].name for m in term.split(":")],
            df=df,
            f_value=f,
            p_value=p,
            p_adjusted=p,
            eta_squared=eta,
            significant=False,
        )
        for term, (df, f, p, eta) in anova.items()
        if ":" in term
    ]
    _bh([(i.p_value, i) for i in interactions], alpha)
    return Factorial(
        factors=effects,
        main_effects=main,
        interactions=interactions,
        cells=_grid_cells(factors, cells),
        model=model,  # type: ignore[arg-type]
        residual_df=int(result.df_resid),
        notes=notes,
    )


def _anova(x, y, columns, ssr_full: float, df_resid: int) -> dict[str, tuple]:
    """Type II ANOVA: each term's sum of squares is what it adds to every term that does not
    contain it (a main effect is judged beside the other main effects, an interaction beside
    everything else); F uses the full model's residual mean square."""
    total = float(((y - y.mean()) ** 2).sum())
    mse = ssr_full / df_resid if df_resid > 0 else math.nan
    terms = list(dict.fromkeys(term for term, _ in columns if term))
    table = {}
    for term in terms:
        members = set(term.split(":"))
        without = [
            i for i, (t, _) in enumerate(columns) if not members <= set(t.split(":")) or not t
        ]
        with_term = without + [i for i, (t, _) in enumerate(columns) if t == term]
        ss = max(_ssr(x, y, without) - _ssr(x, y, with_term), 0.0)
        df = sum(1 for t, _ in columns if t == term)
        f = (ss / df) / mse if mse and math.isfinite(mse) and mse > 0 else None
        p = float(sps.f.sf(f, df, df_resid)) if f is not None else None
        table[term] = (df, f, p, ss / total if total > 0 else None)
    return table


def _contrast(
    factors: list[GridFactor], index: int, level: int, reference: int, columns
) -> np.ndarray:
    """The model's mean at `level` minus at `reference` of factor `index`, averaged over every
    combination of the other factors' levels."""
    others = [range(len(f.levels)) if i != index else [0] for i, f in enumerate(factors)]
    vector = np.zeros(len(columns))
    combos = list(itertools.product(*others))
    for combo in combos:
        at, ref = list(combo), list(combo)
        at[index], ref[index] = level, reference
        vector += _row(tuple(at), columns) - _row(tuple(ref), columns)
    return vector / len(combos)


def _marginal_mean(factors, index: int, level: int, result, columns) -> float:
    others = [range(len(f.levels)) if i != index else [level] for i, f in enumerate(factors)]
    rows = [_row(tuple(combo), columns) for combo in itertools.product(*others)]
    return float(np.mean(rows, axis=0) @ result.params)


def _main_effects(factors, result, columns, alpha: float) -> list[MainEffect]:
    effects = []
    for index, factor in enumerate(factors):
        reference = factor.baseline_level
        if reference is None:
            continue
        for level in range(len(factor.levels)):
            if level == reference:
                continue
            test = result.t_test(_contrast(factors, index, level, reference, columns))
            low, high = test.conf_int(alpha)[0]
            p = float(np.asarray(test.pvalue).item())
            effects.append(
                MainEffect(
                    factor=factor.name,
                    level=factor.labels[level],
                    reference=factor.labels[reference],
                    overrides=factor.levels[level],
                    delta=float(np.asarray(test.effect).item()),
                    ci_low=max(-1.0, float(low)),
                    ci_high=min(1.0, float(high)),
                    p_value=p if math.isfinite(p) else None,
                    p_adjusted=p if math.isfinite(p) else None,
                    significant=False,
                )
            )
    _bh([(e.p_value, e) for e in effects], alpha)
    return effects


def _bh(items: list[tuple[float | None, Any]], alpha: float) -> None:
    """Benjamini-Hochberg within a family; sets `p_adjusted` and `significant`."""
    tested = [(p, item) for p, item in items if p is not None]
    if not tested:
        return
    adjusted = sps.false_discovery_control([p for p, _ in tested], method="bh")
    for (_, item), value in zip(tested, adjusted, strict=True):
        item.p_adjusted = float(min(1.0, value))
        item.significant = item.p_adjusted < alpha


def _factor_effect(factors, index: int, cells, result, columns, row) -> FactorEffect:
    factor = factors[index]
    levels = []
    for level, label in enumerate(factor.labels):
        seeds = sum(len(c.accuracies) for c in cells if c.levels[index] == level)
        mean = None
        if result is not None and seeds:
            mean = _marginal_mean(factors, index, level, result, columns)
        levels.append(LevelMean(level=label, mean=mean, seeds=seeds))
    df, f, p, eta = row if row is not None else (len(factor.levels) - 1, None, None, None)
    return FactorEffect(
        factor=factor.name,
        paths=factor.paths,
        df=df,
        f_value=f,
        p_value=p,
        eta_squared=eta,
        levels=levels,
        baseline_level=(
            factor.labels[factor.baseline_level] if factor.baseline_level is not None else None
        ),
    )


def _grid_cells(factors: list[GridFactor], cells: list[Cell]) -> list[GridCell]:
    return [
        GridCell(
            levels=[factors[i].labels[level] for i, level in enumerate(cell.levels)],
            variant=cell.record.name,
            mean=float(np.mean(cell.accuracies)) if cell.accuracies else None,
            seeds=len(cell.accuracies),
        )
        for cell in cells
    ]


def _design_notes(factors: list[GridFactor], cells: list[Cell]) -> list[str]:
    notes = []
    expected = math.prod(len(f.levels) for f in factors)
    empty = [cell.record.name for cell in cells if not cell.accuracies]
    if len(cells) < expected or empty:
        missing = expected - len(cells) + len(empty)
        named = f" ({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})" if empty else ""
        notes.append(
            f"{missing} of the grid's {expected} cells have no succeeded run{named}: the "
            "estimates use the cells that have one."
        )
    counts = sorted({len(cell.accuracies) for cell in cells if cell.accuracies})
    if len(counts) > 1:
        notes.append(
            f"Unbalanced grid: cells have {counts[0]} to {counts[-1]} succeeded seeds; the ANOVA "
            "uses Type II sums of squares and the marginal means weigh every cell equally."
        )
    return notes

"""service.report.terminal: the answer in the terminal, in the report's units, coloured by
significance and not by sign, inside 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from service.report.terminal import answer, variants_table
from tests.report_fixtures import make_study

RED, GREEN = "\x1b[31m", "\x1b[32m"


def render(renderable, colour: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=colour, color_system="standard" if colour else None)
    console.print(renderable)
    return out.getvalue()


def test_the_answer_gives_the_verdict_the_top_causes_and_their_fixes():
    summary, _ = make_study()
    text = render(answer(summary))
    assert text.startswith("Answer: " + summary.verdict[:40])
    assert "1. Learning rate too high" in text and "fix: optimizer.learning_rate: 0.001" in text
    assert "+5.7 pts [+3.7, +7.7] measured" in text
    assert "2. Class imbalance" in text and "at stake" in text
    assert "next: next-study.yaml" in text


def test_deltas_are_coloured_by_significance_not_by_sign():
    summary, _ = make_study()
    lines = render(variants_table(summary), colour=True).splitlines()
    row = {name: next(line for line in lines if name in line) for name in ("no dropout", "no horizontal flip", "lr 0.001")}
    assert RED in row["no dropout"]  # significantly worse
    assert GREEN in row["lr 0.001"]  # significantly better
    negative = next(line for line in lines if "alert(1)" in line)  # -0.5 points, p 0.3
    assert RED not in negative and GREEN not in negative
    assert RED not in row["no horizontal flip"] and GREEN not in row["no horizontal flip"]


def test_the_table_and_the_answer_fit_80_columns():
    summary, _ = make_study()
    for renderable in (variants_table(summary), answer(summary)):
        assert max(len(line) for line in render(renderable).splitlines()) <= 80

"""service.report.terminal: the answer in the terminal, in the report's units, coloured by
significance and not by sign, inside 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from service.report import build_report
from service.report.summary import summarize_study
from service.report.terminal import answer, results_table, variants_table
from service.store.local import LocalStore
from tests.planted_study import clean_facts, make_grid, write_to_store
from tests.report_fixtures import make_study

RED, GREEN = "\x1b[31m", "\x1b[32m"


def render(renderable, colour: bool = False) -> str:
    out = io.StringIO()
    console = Console(
        file=out, width=80, force_terminal=colour, color_system="standard" if colour else None
    )
    console.print(renderable)
    return out.getvalue()


def test_the_answer_gives_the_verdict_the_top_causes_and_their_fixes():
    summary, _ = make_study()
    text = render(answer(summary))
    assert text.startswith("Answer: " + summary.verdict[:40])
    assert "1. Learning rate too high" in text and "fix: optimizer.learning_rate: 0.001" in text
    assert "fix measured +5.7 points (95% CI +3.7 to +7.7)" in text
    assert "2. Class imbalance" in text and "up to +2.0 points missing by the symptom" in text
    assert "next: next-study.yaml" in text


def test_a_fix_and_a_larger_symptom_are_two_numbers_worded_apart_alike_in_terminal_and_report():
    from service.report.sections import sections
    from tests.planted_study import make_study as planted

    chance = {"test_accuracy": 0.10, "sd": 0.0, "gap": 0.0, "gap_sd": 0.0}
    data = planted(
        {"baseline": chance, "lr x0.1": {"overrides": {"optimizer.learning_rate": 0.0001}}},
        seeds=3,
        dataset=clean_facts(),
    )
    summary = summarize_study(data, generated_at="")
    cause = summary.causes[0]
    assert cause.fix is not None and cause.gain > cause.fix.delta  # the symptom says more is missing
    text = " ".join(render(answer(summary)).split())
    measured = f"fix measured +{cause.fix.delta * 100:.1f} points (95% CI +"
    missing = f"up to +{cause.gain * 100:.1f} points missing by the symptom"
    assert f"{measured}" in text and missing in text and f"); {missing}" in text  # one phrase
    assert "at stake" not in text and " measured)" not in text
    card = next(s for s in sections(summary) if s.id == "causes").items[0]
    rows = dict(card.rows)
    assert rows["fix measured"].startswith(measured.removeprefix("fix measured "))
    assert rows["missing by the symptom"] == missing.removesuffix(" missing by the symptom")


def test_deltas_are_coloured_by_significance_not_by_sign():
    summary, _ = make_study()
    lines = render(variants_table(summary), colour=True).splitlines()
    row = {
        name: next(line for line in lines if name in line)
        for name in ("no dropout", "no horizontal flip", "lr 0.001")
    }
    assert RED in row["no dropout"]  # significantly worse
    assert GREEN in row["lr 0.001"]  # significantly better
    negative = next(line for line in lines if "alert(1)" in line)  # -0.5 points, p 0.3
    assert RED not in negative and GREEN not in negative
    assert RED not in row["no horizontal flip"] and GREEN not in row["no horizontal flip"]


def test_the_table_and_the_answer_fit_80_columns():
    summary, _ = make_study()
    for renderable in (variants_table(summary), answer(summary)):
        assert max(len(line) for line in render(renderable).splitlines()) <= 80


def long_grid():
    factors = [
        {"path": "optimizer.learning_rate", "values": [0.001, 0.01]},
        {"path": "model.dropout", "values": [0.0, 0.25, 0.5]},
    ]
    return make_grid(factors, lambda lv: 0.9 - 0.04 * lv[0], seeds=3, dataset=clean_facts())


def test_long_names_become_short_labels_with_a_legend_inside_80_columns():
    summary = summarize_study(long_grid(), generated_at="")
    text = render(variants_table(summary))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "V1 " in text and "V5 " in text
    assert "optimizer.learning_rate=0.01, model.dropout=0.5" in text.replace("\n", "")
    assert summary.labels["optimizer.learning_rate=0.001, model.dropout=0.25"] == "V2"


def test_the_results_table_from_the_store_is_the_reports_table(tmp_path):
    store = LocalStore(tmp_path)
    document = write_to_store(long_grid(), store)
    summary, _ = build_report(store, document.study_id)
    assert render(results_table(store, document)) == render(variants_table(summary))


def test_a_two_seed_interval_stays_inside_0_and_100_percent():
    data = make_grid(
        [{"path": "model.dropout", "values": [0.0, 0.5]}],
        lambda lv: (0.80, 0.88)[lv[0]],
        seeds=2,
        sd=0.08,
        dataset=clean_facts(),
    )
    summary = summarize_study(data, generated_at="")
    for variant in summary.variants:
        assert 0 <= variant.test_accuracy.ci_low <= variant.test_accuracy.ci_high <= 1


def test_a_grids_answer_says_what_each_factor_explains():
    text = " ".join(render(answer(summarize_study(long_grid(), generated_at=""))).split())
    assert "grid, variance explained: optimizer.learning_rate" in text
    assert "(ANOVA p <0.001); model.dropout" in text

"""The data learning curve: the baseline's config on shares of the training split, drawn and
read ("would more data help?"), for a diagnosis's overfitting search and for a user's own
`training.train_fraction` factor; its points are never fixes or causes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from service.report.formatting import plot_names
from service.report.plots import render_plots
from service.report.render import render_markdown
from service.report.sections import sections
from service.report.summary import summarize_study
from service.report.terminal import answer
from tests.planted_study import clean_facts, make_grid, make_study

OVERFITTING = {"gap": 0.18}
"""A baseline whose training accuracy runs 18 points above validation."""


def share(fraction: float) -> dict:
    return {"training.train_fraction": fraction}


def curve_study(accuracies: tuple[float, float, float], sd: float = 0.004, seeds: int = 5, **baseline):
    """The baseline (100%) and its 25% and 50% shares, with these mean test accuracies."""
    quarter, half, whole = accuracies
    return make_study(
        {
            "baseline": {"test_accuracy": whole, "sd": sd, **baseline},
            "25% of training data": {"overrides": share(0.25), "test_accuracy": quarter, "sd": sd},
            "50% of training data": {"overrides": share(0.5), "test_accuracy": half, "sd": sd},
        },
        seeds=seeds,
        dataset=clean_facts(),
    )


def text_of(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=80).print(renderable)
    return out.getvalue()


def test_a_curve_still_rising_at_100_percent_says_more_data_would_help_beside_the_overfitting_cause():
    data = curve_study((0.68, 0.74, 0.80), **OVERFITTING)
    summary = summarize_study(data, generated_at="")
    curve = summary.learning_curve
    assert [p.fraction for p in curve.points] == [0.25, 0.5, 1.0]
    assert [p.samples for p in curve.points] == [330, 650, 1300]  # 130 per class, per class ceil
    assert [len(p.test_values) for p in curve.points] == [5, 5, 5]
    assert curve.reading == "rising"
    step = curve.step
    assert step.delta == pytest.approx(curve.points[2].test_accuracy.mean - curve.points[1].test_accuracy.mean)
    assert 0 < step.ci_low < step.delta < step.ci_high
    assert curve.statement.startswith(f"more data would likely help: +{step.delta * 100:.1f} points from 50% to 100%")
    assert f"(95% CI +{step.ci_low * 100:.1f} to +{step.ci_high * 100:.1f})" in curve.statement

    # Never a fix or a cause, though the 100% point beats the others by far.
    assert "overfitting" in [c.rule for c in summary.causes]
    for cause in summary.causes:
        assert not {"25% of training data", "50% of training data"} & set(cause.variants)
        assert cause.fix is None or "training.train_fraction" not in cause.fix.changes
    assert all("learning curve" in text for text in summary.not_comparable)
    assert len(summary.not_comparable) == 2

    # The reading sits next to the overfitting cause, in the report and the terminal.
    overfitting = next(
        item for s in sections(summary) if s.id == "causes" for item in s.items if "Overfitting" in item.title
    )
    assert "Learning curve: more data would likely help: +" in overfitting.text
    lines = text_of(answer(summary)).splitlines()
    cause_line = next(i for i, line in enumerate(lines) if "Overfitting" in line)
    curve_line = next(i for i, line in enumerate(lines) if "learning curve: more data would likely help" in line)
    assert curve_line > cause_line and max(len(line) for line in lines) <= 80


def test_the_curve_is_drawn_and_registered_like_the_other_plots():
    data = curve_study((0.68, 0.74, 0.80), **OVERFITTING)
    summary = summarize_study(data, generated_at="")
    assert "data_learning_curve.png" in plot_names(summary)
    png = render_plots(summary, data)["data_learning_curve.png"]
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    markdown = render_markdown(summary)
    assert "![Learning curve: would more data help?](plots/data_learning_curve.png)" in markdown
    assert "## Learning curve: would more data help?" in markdown and "25% (330 samples)" in markdown


def test_a_flat_curve_says_more_data_alone_is_unlikely_to_help():
    summary = summarize_study(curve_study((0.899, 0.90, 0.90), sd=0.003, seeds=8), generated_at="")
    curve = summary.learning_curve
    assert curve.reading == "flat" and curve.step.ci_high < 0.03
    assert curve.statement.startswith(
        "the curve is flat from 50% to 100% of the training split: more data alone is unlikely to help ("
    )
    # No overfitting cause to sit beside: the reading has a line of its own.
    assert summary.causes == []
    assert "  learning curve: the curve is flat from 50% to 100%" in text_of(answer(summary))


def test_a_curve_the_seeds_cannot_settle_says_so_and_what_would_settle_it():
    summary = summarize_study(curve_study((0.80, 0.86, 0.88), sd=0.04, seeds=3), generated_at="")
    curve = summary.learning_curve
    assert curve.reading == "unclear" and curve.step.ci_low < 0 < curve.step.ci_high
    assert curve.statement.startswith("the seeds cannot tell whether more data would help: ")
    assert curve.statement.endswith("more seeds per share would settle it")


def test_a_users_own_train_fraction_factor_is_a_learning_curve_its_100_percent_cell_the_baseline():
    data = make_grid(
        [{"path": "training.train_fraction", "values": [0.25, 0.5, 1.0]}],
        lambda levels: (0.70, 0.80, 0.90)[levels[0]],
        seeds=4,
        dataset=clean_facts(),
    )
    summary = summarize_study(data, generated_at="")
    curve = summary.learning_curve
    assert [(p.fraction, p.variant) for p in curve.points] == [
        (0.25, "training.train_fraction=0.25"),
        (0.5, "training.train_fraction=0.5"),
        (1.0, "baseline"),
    ]
    assert curve.reading == "rising" and "from 50% to 100%" in curve.statement
    assert summary.causes == []  # a smaller share scoring lower is no finding about the baseline
    assert [s.id for s in sections(summary)].count("learning_curve") == 1


def test_one_share_alone_or_a_curve_without_results_is_no_curve():
    lone = make_study(
        {"baseline": {}, "dropout": {"overrides": {"model.dropout": 0.3}}}, dataset=clean_facts()
    )
    assert summarize_study(lone, generated_at="").learning_curve is None
    failed = curve_study((0.78, 0.84, 0.90))
    for variant in failed.variants[1:]:
        for run in variant.runs:
            run.metrics, run.state = None, "failed"
    summary = summarize_study(failed, generated_at="")
    assert summary.learning_curve is None and "data_learning_curve.png" not in plot_names(summary)

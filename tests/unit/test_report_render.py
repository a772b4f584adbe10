"""The report's renderers: report.md, index.html, runs.csv and the plots, from fixed fixtures."""

from __future__ import annotations

import csv
import io
import re
import threading

import pytest
from PIL import Image

from service.report.formatting import plot_names
from service.report.models import Summary
from service.report.plots import _test_accuracy, _train_val_gap, render_plots
from service.report.render import render_html, render_markdown, runs_csv
from service.report.rows import RUN_COLUMNS
from service.report.study_data import StudyData
from service.report.summary import summarize_study
from tests.planted_study import clean_facts, make_grid
from tests.report_fixtures import long_names_grid, make_study
from tests.report_study_data import XSS, Plan, default_plans

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study() -> tuple[Summary, StudyData]:
    return make_study()


@pytest.fixture(scope="module")
def plots(study) -> dict[str, bytes]:
    return render_plots(*study)


def test_markdown_warns_of_a_partial_report_on_top_only_when_partial(study):
    summary, _ = study
    assert summary.partial
    lines = render_markdown(summary).splitlines()
    assert lines[0] == "# Ablation report: seed-study"
    assert lines[2].startswith("> **Warning:** Partial report: 13 of 18 runs succeeded")

    complete = summary.model_copy(update={"partial": False})
    assert "Partial report" not in render_markdown(complete)
    assert "Warning" not in render_markdown(complete)


def test_markdown_answers_first_ranks_causes_lists_inconclusive_and_tabulates_every_variant(study):
    summary, _ = study
    text = render_markdown(summary)
    answer = text.index("## The answer")
    causes = text.index("## What is causing low accuracy")
    symptoms = text.index("## What the baseline's runs show")
    cannot = text.index("## What the study cannot tell")
    steps = text.index("## Next steps")
    assert answer < causes < symptoms < cannot < steps
    assert summary.verdict in text[answer:causes] and summary.statistics.statement in text
    positions = [text.index(cause.title.split(" <")[0], causes) for cause in summary.causes]
    assert causes < positions[0] and positions == sorted(positions) and positions[-1] < symptoms
    assert text.index(summary.strengths[0].title) > symptoms
    assert "about 14 seeds per variant" in text
    assert "```yaml" in text and "learning_rate: 0.001" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(summary.variants)
    assert all(line.count(" | ") == table[0].count(" | ") for line in table)
    assert "| **baseline** | 3/3 |" in text
    for name in plot_names(summary):
        assert f"(plots/{name})" in text


def test_markdown_and_html_escape_a_variant_named_like_a_script(study, plots):
    summary, _ = study
    page = render_html(summary, plots)
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert XSS not in render_markdown(summary)


def test_html_is_self_contained_every_image_a_png_data_uri(study, plots):
    summary, _ = study
    page = render_html(summary, plots)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    sources = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(sources) == len(plots) == len(plot_names(summary))
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert all(re.search(r'<img [^>]*alt="[^"]+"', tag) for tag in re.findall(r"<img [^>]*>", page))
    assert "Content-Security-Policy" in page


def test_html_shows_the_partial_banner_only_when_partial(study, plots):
    summary, _ = study
    assert 'class="banner"' in render_html(summary, plots)
    complete = summary.model_copy(update={"partial": False})
    assert 'class="banner"' not in render_html(complete, plots)


def test_html_marks_causes_symptoms_and_strengths_by_kind_and_shows_fixes_as_yaml(study, plots):
    summary, _ = study
    page = render_html(summary, plots)
    for kind in ("fix", "symptom", "hurts"):
        assert f'<article class="card {kind}">' in page
    assert "<pre><code>optimizer:\n  learning_rate: 0.001</code></pre>" in page
    assert page.index('id="answer"') < page.index('id="causes"') < page.index('id="variants"')


def test_plots_are_pngs_of_sensible_size(study, plots):
    summary, _ = study
    assert list(plots) != [] and sorted(plots) == sorted(plot_names(summary))
    assert "confusion_best.png" in plots  # the best variant is not the baseline here
    for name, png in plots.items():
        assert png[:8] == PNG_MAGIC, name
        image = Image.open(io.BytesIO(png))
        image.verify()
        width, height = Image.open(io.BytesIO(png)).size
        assert 300 <= width <= 2500 and 150 <= height <= 4000, (name, width, height)


def test_runs_csv_has_one_row_per_run_with_the_config_paths_that_differ(study):
    _, data = study
    text = runs_csv(data)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == sum(len(variant.runs) for variant in data.variants)
    header = text.splitlines()[0].split(",")
    assert header[: len(RUN_COLUMNS)] == RUN_COLUMNS
    config = [column for column in header if column.startswith("config.")]
    assert config == sorted(config)
    assert {
        "config.optimizer.learning_rate",
        "config.model.dropout",
        "config.model.dense.0",
        "config.schedule.name",
    } <= set(config)
    assert not any(c.startswith("config.model.conv_blocks") for c in config)  # shared by all
    first = rows[0]
    assert first["study_id"] == data.study_id and first["variant"] == "baseline"
    assert first["state"] == "succeeded" and 0 < float(first["test_accuracy"]) <= 1
    narrower = next(row for row in rows if row["variant"] == XSS)
    assert (first["config.model.dense.0"], narrower["config.model.dense.0"]) == ("128", "64")
    failed = next(row for row in rows if row["state"] == "failed")
    assert failed["test_accuracy"] == "" and "out of memory" in failed["error"]
    assert {row["variant"] for row in rows} >= {XSS, "sgd lr 2.0"}


def test_runs_csv_loads_in_pandas(study):
    import pandas

    _, data = study
    frame = pandas.read_csv(io.StringIO(runs_csv(data)))
    assert len(frame) == sum(len(variant.runs) for variant in data.variants)
    assert frame["test_accuracy"].notna().sum() == 13


def test_a_study_without_any_result_renders_everything():
    plans = [
        Plan(name, None, {}, 0.5, 0.0, states=["failed", "running"])
        for name in ("baseline", "no dropout")
    ]
    summary, data = make_study(plans)
    plots = render_plots(summary, data)
    assert sorted(plots) == [
        "confusion_baseline.png",
        "learning_curves.png",
        "test_accuracy.png",
        "train_val_gap.png",
    ]
    assert "no result" in render_markdown(summary)
    assert render_html(summary, plots).count("<img ") == 4
    assert len(list(csv.DictReader(io.StringIO(runs_csv(data))))) == 4


def test_twenty_variants_and_a_hundred_classes_stay_within_a_page():
    # Long names with `$` (matplotlib's math delimiter) must not break or widen the figures.
    plans = default_plans()[:1] + [
        Plan(f"variant ${i}$ " + "x" * 60, "f", {}, 0.8 + 0.01 * i, 0.01) for i in range(19)
    ]
    summary, data = make_study(plans, classes=100, epochs=3)
    plots = render_plots(summary, data)
    sizes = {name: Image.open(io.BytesIO(png)).size for name, png in plots.items()}
    assert sizes["test_accuracy.png"][0] < 1100 and sizes["learning_curves.png"][0] < 1400
    assert max(sizes["confusion_baseline.png"]) <= 1800


def test_plots_render_from_several_threads_at_once():
    # No pyplot, no global backend: figures drawn in parallel threads come out the same.
    summary, data = make_study(default_plans()[:3], epochs=4)
    expected = render_plots(summary, data)
    results: list[dict[str, bytes]] = []
    threads = [
        threading.Thread(target=lambda: results.append(render_plots(summary, data)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


def test_a_two_seed_study_draws_accuracy_inside_0_to_100_percent():
    # Two seeds far apart once drew the accuracy axis from -25 to 175%.
    data = make_grid(
        [{"path": "model.dropout", "values": [0.0, 0.5]}],
        lambda lv: (0.95, 0.97)[lv[0]],
        seeds=2,
        sd=0.04,
        dataset=clean_facts(),
    )
    summary = summarize_study(data, generated_at="")
    low, high = _test_accuracy(summary).axes[0].get_xlim()
    assert 0 <= low < high <= 100
    gap_low, gap_high = _train_val_gap(summary).axes[0].get_xlim()
    assert -100 <= gap_low < gap_high <= 100
    for variant in summary.variants:
        assert 0 <= variant.test_accuracy.ci_low <= variant.test_accuracy.ci_high <= 1


@pytest.mark.parametrize(
    ("factors", "grid_plot"), [(2, "grid_heatmap.png"), (3, "factor_importance.png")]
)
def test_a_grid_report_has_its_factor_plot_its_analysis_and_a_label_legend(factors, grid_plot):
    summary, data = long_names_grid(factors, seeds=2)
    plots = render_plots(summary, data)
    assert grid_plot in plots and Image.open(io.BytesIO(plots[grid_plot])).size[0] <= 1400
    markdown = render_markdown(summary)
    assert "## The grid's factors" in markdown and "## Variant labels" in markdown
    assert f"| V{len(summary.variants) - 1} | " in markdown
    page = render_html(summary, plots)
    assert 'id="factorial"' in page and 'class="labels"' in page


def test_evidence_reads_in_points_percent_and_p_values_never_json():
    from service.report.sections import _scalar_rows

    rows = dict(
        _scalar_rows(
            {
                "gap": 0.183,
                "gap_p_value": 0.0004,
                "test_minus_validation": 0.031,
                "val_accuracy_slope": 0.004,
                "minority_recall": 0.4,
                "per_class_recall": {"3": 0.0, "8": 0.95},
                "train_class_counts": list(range(20)),
                "ratio": 4.0,
            }
        )
    )
    assert rows["gap"] == "+18.3 pts" and rows["gap p value"] == "<0.001"
    assert rows["test minus validation"] == "+3.1 pts"
    assert rows["val accuracy slope"] == "+0.4 pts per epoch"
    assert rows["minority recall"] == "40.0%" and rows["per class recall"] == "3: 0.0%, 8: 95.0%"
    assert rows["train class counts"].endswith("11 (and 8 more)") and rows["ratio"] == "4"
    assert not any(value.startswith(("{", "[")) for value in rows.values())

"""service.report.rows: runs.csv and `Study.results()` share one row schema, config columns
included, and load in pandas with the same columns."""

from __future__ import annotations

import io

import pandas
import pytest

from service.client import Study
from service.report import build_report
from service.report.rows import RUN_COLUMNS, run_rows
from service.store.local import LocalStore
from tests.planted_study import make_grid, write_to_store


@pytest.fixture
def stored(tmp_path):
    """A 2 x 2 grid study written into a local store as the workers and the planner do, one
    cell's runs failed."""
    factors = [
        {"path": "optimizer.learning_rate", "values": [0.001, 0.01]},
        {"path": "model.dropout", "values": [0.0, 0.5]},
    ]
    data = make_grid(
        factors, lambda lv: 0.9 - 0.03 * lv[0], seeds=2, states={(1, 1): ["failed"] * 2}
    )
    store = LocalStore(tmp_path / "store")
    return store, write_to_store(data, store)


def test_rows_carry_the_fixed_columns_then_the_config_paths_that_differ(stored):
    store, document = stored
    rows = run_rows(store, document)
    assert len(rows) == sum(len(v.run_ids) for v in document.variants)
    assert list(rows[0])[: len(RUN_COLUMNS)] == RUN_COLUMNS
    assert list(rows[0])[len(RUN_COLUMNS) :] == [
        "config.model.dropout",
        "config.optimizer.learning_rate",
    ]
    assert all(list(row) == list(rows[0]) for row in rows)
    failed = [row for row in rows if row["state"] == "failed"]
    assert len(failed) == 2 and all(row["test_accuracy"] is None for row in failed)
    assert (
        failed[0]["config.optimizer.learning_rate"] == 0.01 and "worker lost" in failed[0]["error"]
    )
    assert run_rows(store, document.model_dump(mode="json")) == rows  # the JSON reads the same


def test_runs_csv_loads_in_pandas_with_the_columns_of_study_results(stored):
    store, document = stored
    _, files = build_report(store, document.study_id)
    frame = pandas.read_csv(io.BytesIO(files["runs.csv"]))
    results = pandas.DataFrame(Study(document.study_id, document, store, None).results())
    assert list(frame.columns) == list(results.columns) == list(run_rows(store, document)[0])
    assert len(frame) == len(results) == 10
    assert frame["test_accuracy"].notna().sum() == 8
    assert (
        frame["config.optimizer.learning_rate"].tolist()
        == results["config.optimizer.learning_rate"].tolist()
    )

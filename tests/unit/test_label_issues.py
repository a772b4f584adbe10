"""The report's list of training samples most likely mislabelled: stored out-of-fold predictions
with planted flipped labels are merged over the folds, cleanlab ranks the planted samples first,
and the out-of-fold runs stay out of every comparison of the report."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from service.holdout import HeldOutPredictions, write_held_out
from service.report import gather
from service.report.label_issues import label_issues
from service.report.render import render_markdown
from service.report.summary import summarize_study
from service.report.terminal import answer
from service.store import LocalStore
from tests.planted_study import make_study, write_to_store

FOLDS = 4
SAMPLES = 400
CLASSES = 10
PLANTED = 24


def fold_variants(folds: range) -> dict[str, dict]:
    return {
        f"baseline fold {fold + 1}/{FOLDS}": {
            "overrides": {"training.holdout": {"folds": FOLDS, "fold": fold}},
            "factor": "holdout",
            "test_accuracy": 0.5,  # trained on less data: would look like a harmful change
            "states": ["succeeded"],
        }
        for fold in folds
    }


def planted_predictions(rng: np.random.Generator):
    """(true labels, given labels, probabilities, flipped indices): each sample's probabilities
    favour its true class; PLANTED samples carry another class as their given label, and some
    clean samples are merely uncertain (their true class at 40-50%)."""
    truth = rng.integers(0, CLASSES, SAMPLES)
    probabilities = rng.dirichlet(np.ones(CLASSES), SAMPLES) * 0.2
    confidence = np.where(rng.random(SAMPLES) < 0.15, rng.uniform(0.4, 0.5, SAMPLES), 0.8)
    probabilities[np.arange(SAMPLES), truth] += confidence
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    flipped = rng.choice(SAMPLES, PLANTED, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, CLASSES, PLANTED)) % CLASSES
    return truth, given, probabilities, flipped


def stored_study(tmp_path, folds: range = range(FOLDS)):
    rng = np.random.default_rng(5)
    data = make_study({"baseline": {}, **fold_variants(folds)}, seeds=3)
    store = LocalStore(tmp_path / "store")
    write_to_store(data, store)
    _, given, probabilities, flipped = planted_predictions(rng)
    samples = rng.permutation(1000)[:SAMPLES]  # indices into the source's training data
    for variant in data.variants[1:]:
        fold = variant.overrides["training.holdout"]["fold"]
        rows = np.arange(SAMPLES)[np.arange(SAMPLES) % FOLDS == fold]
        (run,) = variant.runs
        write_held_out(
            store,
            HeldOutPredictions(
                run_id=run.run_id, folds=FOLDS, fold=fold,
                class_names=[str(c) for c in range(CLASSES)],
                samples=samples[rows].tolist(),
                names=[f"x_train[{s}]" for s in samples[rows]],
                labels=given[rows].tolist(),
                probabilities=probabilities[rows].tolist(),
            ),
        )  # fmt: skip
    planted = {f"x_train[{s}]" for s in samples[flipped]}
    return store, data.study_id, planted


def test_the_planted_flipped_labels_are_listed_first(tmp_path):
    store, study_id, planted = stored_study(tmp_path)
    summary = summarize_study(gather(store, study_id), generated_at="")
    found = summary.label_issues
    assert found is not None
    assert (found.folds, found.samples, len(found.runs)) == (FOLDS, SAMPLES, FOLDS)
    assert PLANTED * 3 // 4 <= found.flagged < SAMPLES // 4  # confident learning is cautious
    listed = [issue.name for issue in found.top]
    assert len(listed) == 20 and set(listed) <= planted
    confidences = [issue.given_confidence for issue in found.top]
    assert confidences == sorted(confidences)  # lowest self-confidence first
    first = found.top[0]
    assert first.given != first.predicted and first.given_confidence < 0.1


def test_out_of_fold_runs_are_no_variant_of_the_report(tmp_path):
    store, study_id, _ = stored_study(tmp_path)
    data = gather(store, study_id)
    assert [v.name for v in data.variants] == ["baseline"]
    assert len(data.out_of_fold) == FOLDS and len(data.held_out) == FOLDS
    summary = summarize_study(data, generated_at="")
    assert [v.name for v in summary.variants] == ["baseline"]
    assert summary.causes == [] and "fold" not in summary.verdict


def test_the_report_and_the_terminal_show_the_list(tmp_path):
    store, study_id, _ = stored_study(tmp_path)
    summary = summarize_study(gather(store, study_id), generated_at="")
    first = summary.label_issues.top[0]
    markdown = render_markdown(summary)
    assert "## Training samples most likely mislabelled" in markdown
    assert f"cleanlab flags {summary.label_issues.flagged} of {SAMPLES} training samples" in markdown
    assert f"{first.name}: labelled {first.given}, predicted {first.predicted}" in markdown
    console = Console(width=100, record=True)
    console.print(answer(summary))
    text = console.export_text()
    assert f"cleanlab flags {summary.label_issues.flagged} of {SAMPLES}" in text
    assert f"{first.name}: labelled {first.given}" in text
    dumped = summary.model_dump(mode="json")["label_issues"]
    assert dumped["top"][0]["name"] == first.name


def test_no_list_until_every_fold_is_stored(tmp_path):
    store, study_id, _ = stored_study(tmp_path, folds=range(FOLDS - 1))
    data = gather(store, study_id)
    assert len(data.out_of_fold) == FOLDS - 1
    assert label_issues(data) is None
    assert summarize_study(data, generated_at="").label_issues is None

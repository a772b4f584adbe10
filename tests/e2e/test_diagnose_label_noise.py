"""`ablate diagnose` on digits whose training labels are 30% wrong (clean test labels): the
baseline shows test accuracy above validation, the search trains its out-of-fold runs, and the
report lists the training samples most likely mislabelled, mostly ones that were flipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from service.diagnose.search import FOLDS, OUT_OF_FOLD
from service.diagnose.staged import diagnosis_spec
from service.identity import study_id
from service.lifecycle.documents import RoundDocument
from service.spec import load_spec
from tests.e2e.test_cli_run import ablate

pytestmark = pytest.mark.slow

NOISE = 0.3
LISTED = 20


def noisy_digits(path) -> set[int]:
    """digits as an npz: a clean, stratified test split, and 30% of the training labels moved to
    another class (uniformly); returns the flipped rows of x_train."""
    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    rng = np.random.default_rng(0)
    flipped = np.flatnonzero(rng.random(len(y_train)) < NOISE)
    noisy = y_train.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, len(flipped))) % 10
    np.savez(path, x_train=x_train, y_train=noisy, x_test=x_test, y_test=y_test)
    return set(flipped.tolist())


def test_the_diagnosis_lists_mostly_truly_flipped_training_samples(tmp_path):
    flipped = noisy_digits(tmp_path / "noisy.npz")
    spec = {
        "name": "noisy-labels",
        "dataset": {"kind": "npz", "path": str(tmp_path / "noisy.npz"), "validation_split": 0.15},
        "model": {"conv_blocks": [{"filters": 16}], "dense": [64]},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "training": {"epochs": 6, "batch_size": 32},
        "ablation": {"seeds": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    store = tmp_path / "store"
    done = ablate(
        "diagnose", str(path), "--store", str(store), "--jobs", "2", "--budget-runs", "8",
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    study = study_id(diagnosis_spec(load_spec(path)))
    summary = json.loads((store / "studies" / study / "report" / "summary.json").read_text())

    # The baseline's symptom pointed at the labels, and the search trained the folds on one seed.
    assert "test_above_validation" in {s["rule"] for s in summary["symptoms"]}
    search = RoundDocument.model_validate_json(
        (store / "studies" / study / "rounds" / "001.json").read_text()
    )
    folds = [v for v in search.variants if v.factor == OUT_OF_FOLD]
    assert len(folds) == FOLDS and all(len(v.run_ids) == 1 for v in folds)
    for variant in folds:
        assert (store / "runs" / variant.run_ids[0] / "held_out.json").is_file()

    # The out-of-fold runs are no variant of the report; the list is there.
    assert not any("fold" in v["name"] for v in summary["variants"])
    issues = summary["label_issues"]
    assert issues is not None and issues["folds"] == FOLDS
    assert issues["flagged"] >= LISTED and len(issues["top"]) == LISTED
    listed = [issue["sample"] for issue in issues["top"]]
    assert all(issue["name"] == f"x_train[{issue['sample']}]" for issue in issues["top"])
    precision = len(set(listed) & flipped) / LISTED
    assert precision >= 0.7, (precision, listed)
    assert "Training samples most likely mislabelled" in (
        store / "studies" / study / "report" / "index.html"
    ).read_text()
    assert "cleanlab flags" in done.stdout

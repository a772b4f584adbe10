"""Out-of-fold predictions: what a run with `training.holdout` stores beside its metrics.

`runs/{run_id}/held_out.json` holds, for each sample of the held-out fold, its identity in the
user's dataset, its given label and the class probabilities the run's model (trained without
that fold) predicts for it. The worker writes it (`workers.holdout`) before metrics.json, so a
succeeded out-of-fold run always has it; the reporter merges the folds of one config into
out-of-fold probabilities for every training sample (`service.report.label_issues`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from service.lifecycle.documents import Document
from service.lifecycle.storage import read_document, run_key, write_document
from service.store.base import Store

HELD_OUT_FILE = "held_out.json"


class HeldOutPredictions(Document):
    """`runs/{run_id}/held_out.json`: one fold's out-of-fold predictions."""

    run_id: str
    folds: Annotated[int, Field(ge=2)]
    fold: Annotated[int, Field(ge=0)]
    class_names: list[str]
    samples: list[int]
    """Each held-out sample's index in the source's training data (`SplitArrays.train_index`)."""
    names: list[str]
    """Each sample's identity in the user's dataset (`x_train[17]`, `cats/017.png`)."""
    labels: list[int]
    """The given (possibly wrong) label of each sample, 0 .. K-1."""
    probabilities: list[list[float]]
    """Predicted class probabilities, one row of K per sample."""

    @model_validator(mode="after")
    def _aligned(self) -> HeldOutPredictions:
        count = len(self.samples)
        if not len(self.names) == len(self.labels) == len(self.probabilities) == count:
            raise ValueError("samples, names, labels and probabilities must have one entry per sample")
        width = len(self.class_names)
        if any(len(row) != width for row in self.probabilities):
            raise ValueError(f"every row of probabilities must have {width} entries (one per class)")
        if any(not 0 <= label < width for label in self.labels):
            raise ValueError(f"labels must be class indices 0 .. {width - 1}")
        if self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is not one of the {self.folds} folds")
        return self


def write_held_out(store: Store, document: HeldOutPredictions) -> None:
    write_document(store, run_key(document.run_id, HELD_OUT_FILE), document)


def read_held_out(store: Store, run_id: str) -> HeldOutPredictions:
    """The run's held-out predictions; `KeyNotFound` when it stored none."""
    return read_document(store, run_key(run_id, HELD_OUT_FILE), HeldOutPredictions)

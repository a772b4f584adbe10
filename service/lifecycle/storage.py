"""The lifecycle's documents in the store: their keys, reading them (an unreadable one is an
error naming its key and field) and writing them, and the effective state of a run as every
reader must see it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from service.errors import KeyNotFound, StoreError
from service.identity import RunSpec
from service.lifecycle.documents import RunDocument, RunMetrics, RunStatus, StudyDocument, utcnow
from service.lifecycle.states import RunState
from service.store.base import Store
from service.text import printable


class DocumentError(StoreError):
    """A stored document is unreadable or is not what its key says; the message names the key."""


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


def study_key(study_id: str, name: str) -> str:
    return f"studies/{study_id}/{name}"


def round_key(study_id: str, index: int) -> str:
    return study_key(study_id, f"rounds/{index:03d}.json")


def write_run_document(store: Store, run: RunSpec) -> None:
    store.put_json(run_key(run.run_id, "run.json"), RunDocument.of(run).model_dump(mode="json"))


Doc = TypeVar("Doc", bound=BaseModel)


def read_document(store: Store, key: str, model: type[Doc]) -> Doc:
    """The document under `key` as `model`; `KeyNotFound` when absent, `DocumentError` naming
    the key and the first bad field when it is unreadable or describes something else."""
    data = store.get_json(key)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"] and error["type"] == "value_error":  # the model's own words
            problem = str(error["ctx"]["error"])
        else:
            where = ".".join(str(part) for part in error["loc"]) or "the document"
            label = re.sub(r"(?<!^)(?=[A-Z])", " ", model.__name__).lower()
            problem = f"not a {label} ({where}: {printable(error['msg'], 200)})"
        raise DocumentError(f"{store.location(key)}: {problem}") from None


def write_document(store: Store, key: str, document: BaseModel) -> None:
    store.put_json(key, document.model_dump(mode="json"))


def read_study(store: Store, study_id: str) -> StudyDocument:
    """The study's `study.json`; `KeyNotFound` when there is none."""
    return read_document(store, study_key(study_id, "study.json"), StudyDocument)


def read_status(store: Store, run_id: str) -> RunStatus | None:
    """The run's status.json, or None when absent. An unreadable status counts as absent: the
    run starts over cleanly (its checkpoints, if any, are still used)."""
    try:
        return RunStatus.model_validate(store.get_json(run_key(run_id, "status.json")))
    except KeyNotFound:
        return None
    except (StoreError, ValueError):
        return None


def write_status(store: Store, status: RunStatus) -> None:
    status.updated_at = utcnow()
    store.put_json(run_key(status.run_id, "status.json"), status.model_dump(mode="json"))


def read_metrics(store: Store, run_id: str) -> RunMetrics | None:
    """The run's result, or None when it has none yet; `DocumentError` when unreadable."""
    try:
        return read_document(store, run_key(run_id, "metrics.json"), RunMetrics)
    except KeyNotFound:
        return None


def has_result(store: Store, run_id: str) -> bool:
    return store.exists(run_key(run_id, "metrics.json"))


def effective_state(store: Store, run_id: str) -> tuple[RunState, RunStatus | None]:
    """The run's state as every reader must see it: `metrics.json` present = succeeded (it is
    written last, so it beats whatever status.json says); otherwise status.json's state; no
    status = queued. Returns the status too (None when absent), for its epoch and error."""
    status = read_status(store, run_id)
    if status is not None and status.state is RunState.SUCCEEDED:
        return RunState.SUCCEEDED, status
    if has_result(store, run_id):
        return RunState.SUCCEEDED, status
    return (status.state if status is not None else RunState.QUEUED), status


def effective_states(store: Store, run_ids: Iterable[str]) -> dict[str, tuple[RunState, RunStatus | None]]:
    return {run_id: effective_state(store, run_id) for run_id in run_ids}

"""Validation of a run's queue message, field by field, before the worker acts on any of it.

A message is `train_run(run=..., study_id=..., store=...)` with the task id
`{run_id}-{12 hex}` that the client gives it (service/client.py). Anyone who can reach the
broker can send one, so every field is checked: the run against its model (the same checks as a
spec's), the study id against its pattern and length, the store against this worker's own, and
the run id in the task id against the hash of the run's config.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from service.identity import STUDY_ID_PATTERN, RunSpec
from service.spec.load import format_errors
from service.text import printable

TASK_ID = re.compile(r"^(?P<run_id>[0-9a-f]{16})-[0-9a-f]{12}$")
MAX_STORE_URL = 1024


class InvalidMessage(Exception):
    """The message cannot be a run of ours; the text says which field and why."""


def validate_message(
    run: Any, study_id: Any, store: Any, task_id: Any, worker_store: str
) -> RunSpec:
    """The message's run, once every field is valid; `InvalidMessage` naming the first bad one."""
    if not isinstance(study_id, str) or not STUDY_ID_PATTERN.match(study_id):
        raise InvalidMessage(f"study_id {printable(study_id)} is not a study id")
    if not isinstance(store, str) or not 0 < len(store) <= MAX_STORE_URL:
        raise InvalidMessage(f"store {printable(store)} is not a store URL")
    if store != worker_store:
        raise InvalidMessage(
            f"store {printable(store)}: this worker writes to {printable(worker_store)}"
        )
    if not isinstance(run, dict):
        raise InvalidMessage(f"run is a {type(run).__name__}, not a mapping")
    try:
        spec = RunSpec.model_validate(run)
    except ValidationError as exc:
        field, message = format_errors(exc, run)[0]
        raise InvalidMessage(f"run.{field}: {printable(message, 300)}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"run: {type(exc).__name__}: {printable(str(exc))}") from None
    match = TASK_ID.match(task_id) if isinstance(task_id, str) else None
    if match is None:
        raise InvalidMessage(f"task id {printable(task_id)} is not '<run_id>-<12 hex>'")
    if match["run_id"] != spec.run_id:
        raise InvalidMessage(
            f"task id {task_id}: run id {match['run_id']} is not the hash of the run's config "
            f"({spec.run_id})"
        )
    return spec

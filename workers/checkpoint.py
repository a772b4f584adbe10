"""Per-epoch checkpoints in the store: model weights, optimizer state and the training state.

One `.npz` per epoch under `runs/{run_id}/checkpoints/` (plain arrays, read with
allow_pickle=False), plus `latest.json` pointing at the newest. The two newest are kept so a
corrupt latest checkpoint falls back to the one before it, and from there to scratch.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import structlog

from service.errors import KeyNotFound, StoreError
from service.records import run_key
from service.store.base import Store

log = structlog.get_logger(__name__)
KEEP = 2


@dataclass
class TrainingState:
    """What a resumed run needs besides the variables: history and callback state."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    wait: int = 0
    plateau_best: float | None = None
    plateau_wait: int = 0
    learning_rate: float | None = None


def _key(run_id: str, epoch: int) -> str:
    return run_key(run_id, f"checkpoints/epoch-{epoch:04d}.npz")


def save(store: Store, run_id: str, variables: list[Any], state: TrainingState) -> None:
    arrays = {f"v{index:05d}": np.asarray(v) for index, v in enumerate(variables)}
    arrays["__state__"] = np.array(json.dumps(asdict(state)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    store.put_bytes(_key(run_id, state.epoch), buffer.getvalue(), "application/octet-stream")
    # The pointer is written after the data, so it never names a half-written checkpoint.
    store.put_json(run_key(run_id, "checkpoints/latest.json"), {"epoch": state.epoch})
    for old in _epochs(store, run_id)[:-KEEP]:
        store.delete(_key(run_id, old))


def restore(store: Store, run_id: str, variables: list[Any]) -> TrainingState | None:
    """Assign the newest readable checkpoint to `variables`; None when there is none."""
    for epoch in reversed(_epochs(store, run_id)):
        key = _key(run_id, epoch)
        try:
            with np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False) as data:
                values = [data[f"v{index:05d}"] for index in range(len(variables))]
                if len(data.files) != len(variables) + 1:
                    raise ValueError(f"holds {len(data.files) - 1} variables, the model has {len(variables)}")
                for variable, value in zip(variables, values, strict=True):
                    if tuple(variable.shape) != value.shape:
                        raise ValueError(f"shape {value.shape} does not match {tuple(variable.shape)}")
                state = TrainingState(**json.loads(str(data["__state__"])))
        except (KeyNotFound, StoreError, ValueError, KeyError, OSError, EOFError, TypeError) as exc:
            log.warning("checkpoint unreadable, trying an older one", key=key, error=str(exc))
            continue
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        return state
    return None


def _epochs(store: Store, run_id: str) -> list[int]:
    epochs = []
    for key in store.list(run_key(run_id, "checkpoints/")):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("epoch-") and name.endswith(".npz"):
            try:
                epochs.append(int(name[len("epoch-") : -len(".npz")]))
            except ValueError:
                continue
    return sorted(epochs)

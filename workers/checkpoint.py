"""Per-epoch checkpoints in the store: model weights, optimizer state and the training state.

One `.npz` per epoch under `runs/{run_id}/checkpoints/` (plain arrays, read with
allow_pickle=False), plus `latest.json` pointing at the newest. The two newest are kept so a
corrupt latest checkpoint falls back to the one before it, and from there to scratch.

Training does not wait for the store: at each epoch end the variables are copied to host memory
and a `Writer` thread stores them (and the status that follows) while the next epoch trains.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import structlog

from service.errors import KeyNotFound, StoreError
from service.lifecycle.storage import run_key
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
    precision_policy: str | None = None
    """The dtype policy the variables were trained under (None: a checkpoint from before it was
    stored). A run resumes only under the same policy: float16's loss-scale optimizer has
    variables the others lack, and a bfloat16 run must not finish as float32 unannounced."""


class PolicyChanged(Exception):
    """The stored checkpoint was trained under another precision policy than this attempt's."""

    def __init__(self, epoch: int, stored: str, current: str) -> None:
        self.epoch, self.stored, self.current = epoch, stored, current
        super().__init__(
            f"the checkpoint of epoch {epoch} was trained under {stored}, this worker trains under "
            f"{current}: restarted from scratch"
        )


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


def snapshot(variables: list[Any], state: TrainingState) -> tuple[list[np.ndarray], TrainingState]:
    """Copies of the variables' values and of the state, for a write that trains on meanwhile."""
    return [np.array(v, copy=True) for v in variables], replace(state, history=list(state.history))


class Writer:
    """Stores checkpoints on a thread of their own, in the order submitted.

    At most one write waits while another is in progress (`submit` blocks beyond that), so a
    slow store holds training back rather than piling up copies in memory, and a crash loses at
    most the two newest epochs' checkpoints. A failed write stops all later ones and is raised
    in the training thread by the next `raise_failure`, `submit` or `close`.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=1)
        self._failure: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._work, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self.raise_failure()
        self._jobs.put(job)

    def raise_failure(self) -> None:
        if self._failure is not None:
            self._raised = True
            raise self._failure

    def close(self, raise_failure: bool = True) -> None:
        """Wait for every submitted write; then raise a failed one (unless the caller is already
        handling an error of its own: the write's error is logged then)."""
        self._jobs.put(None)
        self._thread.join()
        if raise_failure:
            self.raise_failure()
        elif self._failure is not None and not self._raised:
            log.warning("checkpoint write failed", error=f"{type(self._failure).__name__}: {self._failure}")

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._failure is None:
                try:
                    job()
                except BaseException as exc:  # handed to the training thread
                    self._failure = exc


def restore(
    store: Store, run_id: str, variables: list[Any], precision_policy: str | None = None
) -> TrainingState | None:
    """Assign the newest readable checkpoint to `variables`; None when there is none. Raises
    `PolicyChanged` (assigning nothing) when that checkpoint was trained under another policy
    than `precision_policy`."""
    for epoch in reversed(_epochs(store, run_id)):
        key = _key(run_id, epoch)
        try:
            with np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False) as data:
                stored = json.loads(str(data["__state__"])).get("precision_policy")
                if precision_policy is not None and stored is not None and stored != precision_policy:
                    raise PolicyChanged(epoch, stored, precision_policy)
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


def discard(store: Store, run_id: str) -> None:
    """Delete every checkpoint of the run (before it restarts from scratch under another
    policy, so that no later attempt resumes from them)."""
    for epoch in _epochs(store, run_id):
        store.delete(_key(run_id, epoch))


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

"""The states of a run and their predicates (final, active, reusable): every module asks
`RunState`, none keeps its own set of states."""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    """The states of a run (DESIGN.md). A `str`, so stored JSON and comparisons keep plain words."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """No attempt is training or will train it unless it is submitted again."""
        return self not in (RunState.QUEUED, RunState.RUNNING)

    @property
    def is_active(self) -> bool:
        """Queued or training: an attempt owns it (or will)."""
        return not self.is_final

    @property
    def is_reusable(self) -> bool:
        """Its result is final: reused by every study that plans it, never retrained. A failed
        or cancelled run is final too, but trains again when submitted again."""
        return self in (RunState.SUCCEEDED, RunState.DIVERGED)


STATES: tuple[RunState, ...] = tuple(RunState)
FINAL_STATES = frozenset(state for state in RunState if state.is_final)
ACTIVE_STATES = frozenset(state for state in RunState if state.is_active)
REUSABLE_STATES = frozenset(state for state in RunState if state.is_reusable)
TERMINAL_STATES = REUSABLE_STATES  # the name earlier versions used

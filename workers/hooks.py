"""The runner's contract with whoever calls it, without TensorFlow: what the runner asks its
caller at every epoch end (`RunHooks`), why a run stopped before its last epoch (`StopReason`),
how it ended (`RunResult`), and the two exceptions a caller acts on (`LeaseLost`,
`TimeLimitReached`).

The embedded executor calls the runner with no hooks (`NO_HOOKS`: nothing ever stops a run
early but the run itself); the Celery task passes its cancellation flag, the worker's
shutdown flag, the lease's fence and the time limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from service.errors import AblateError
from service.lifecycle.states import RunState


class StopReason(str, Enum):
    """Why training ended before its last epoch. Set once, by the epoch recorder."""

    DIVERGED = "diverged"
    """The loss became NaN or infinite: the run is final as `diverged`."""
    EARLY_STOP = "early_stop"
    """The early-stopping rule fired: the run goes on to evaluate and succeeds."""
    LEASE_LOST = "lease_lost"
    """A newer attempt owns the run: this one writes nothing more."""
    CANCELLED = "cancelled"
    """The run was cancelled: it ends `cancelled`, resumable from the epoch's checkpoint."""
    HANDED_BACK = "handed_back"
    """The worker is shutting down: the run goes back to `queued` for another attempt."""
    TIME_LIMIT = "time_limit"
    """The run's time limit passed: it ends `failed` (`TimeLimitReached`)."""

    def __str__(self) -> str:
        return self.value

    @property
    def is_requested(self) -> bool:
        """Asked for by the caller at an epoch end (not decided by the training itself). The
        runner, not the checkpoint writer, writes such a run's status, once the writer is done."""
        return self in (StopReason.CANCELLED, StopReason.HANDED_BACK, StopReason.TIME_LIMIT)


class LeaseLost(AblateError):
    """This attempt no longer owns the run (its lease expired and a newer attempt took it)."""


class TimeLimitReached(AblateError):
    """The run stopped at an epoch end because its time limit passed (`time_up` said so)."""


def _no() -> bool:
    return False


def _yes() -> bool:
    return True


@dataclass(frozen=True)
class RunHooks:
    """Questions the runner asks while a run trains; each defaults to the answer that lets the
    run go on. They are asked at epoch ends only (never per batch), so a slow answer (a Redis
    round trip) costs a few milliseconds per epoch."""

    cancelled: Callable[[], bool] = _no
    """Whether the run was cancelled: asked after each epoch's checkpoint."""
    shutting_down: Callable[[], bool] = _no
    """Whether the worker is shutting down and hands its run back: asked next."""
    time_up: Callable[[], bool] = _no
    """Whether the run's time limit passed: asked last."""
    owns_run: Callable[[], bool] = _yes
    """The lease's fence: whether this attempt still owns the run. Asked before every write
    once training started; a no makes the attempt stale, and it writes nothing more."""

    def stop_requested(self) -> StopReason | None:
        """The caller's reason to stop at this epoch end, in order of precedence: a cancelled
        run is cancelled even on a worker that is shutting down or out of time."""
        if self.cancelled():
            return StopReason.CANCELLED
        if self.shutting_down():
            return StopReason.HANDED_BACK
        if self.time_up():
            return StopReason.TIME_LIMIT
        return None

    def fence(self, run_id: str) -> None:
        """Raise `LeaseLost` unless this attempt still owns the run (call before each write)."""
        if not self.owns_run():
            raise LeaseLost(f"run {run_id}: a newer attempt owns the run")


NO_HOOKS = RunHooks()


@dataclass(frozen=True)
class RunResult:
    """How one call of the runner ended. `state` is the run's state as the store now says;
    `stop` says why training ended early, when it did (a handed-back run is `queued` again)."""

    run_id: str
    state: RunState
    reused: bool
    test_accuracy: float | None = None
    epochs_run: int = 0
    error: str | None = None
    stop: StopReason | None = None

    @property
    def handed_back(self) -> bool:
        return self.stop is StopReason.HANDED_BACK

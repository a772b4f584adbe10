"""The local dispatcher behind `ablate run`: trains a study's runs on this machine.

The study driver (service/driver.py) decides what to train; this module only trains it. Runs train
in child processes (spawned, never forked, so TensorFlow is imported only where it trains), `jobs`
at a time, each calling the same `workers.runner.run` a Celery worker calls. The parent process
never imports TensorFlow; it follows progress by reading each run's `status.json`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from service.driver import Dispatcher, StudyDriver, StudyStatus
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus
from service.plan import Plan
from service.store import Store, open_store


class Trainers:
    """The training processes, `jobs` of them. Started before the plan is built, so that their
    TensorFlow import (seconds) overlaps the parent's planning instead of following it."""

    def __init__(self, jobs: int = 1, verbose: bool = False, gpu_memory_mb: int | None = None) -> None:
        from workers.gpus import local_placement  # nvidia-smi only: no TensorFlow here

        # With GPUs each process is pinned to one and capped as `ablate worker` does (N
        # uncapped processes would all take GPU 0); a slot counter hands out the placements.
        placement = local_placement(jobs, gpu_memory_mb)
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=_init_child,
            initargs=(verbose, placement, context.Value("i", 0)),
        )
        for _ in range(jobs):
            self.pool.submit(_warm_up)

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)

    def kill(self) -> None:
        """Stop at once (bad input found after the start): nothing has been trained."""
        for child in multiprocessing.active_children():
            child.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)


class LocalDispatcher(Dispatcher):
    """Dispatches runs to this machine's training processes. Nothing outlives `ablate run`, so
    a run the store shows as queued or running (left by an earlier `ablate run` that was
    killed) is trained again, resuming from its checkpoint."""

    trusts_active = False

    def __init__(
        self,
        store: Store,
        jobs: int = 1,
        verbose: bool = False,
        trainers: Trainers | None = None,
        gpu_memory_mb: int | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.verbose = verbose
        self.gpu_memory_mb = gpu_memory_mb
        self.trainers = trainers
        self.own = trainers is None
        self.futures: dict[Future, str] = {}
        self.reported: set[Future] = set()

    def check(self) -> None:
        """Nothing to reach: the training processes are this machine's."""

    def prepare(self, runs: int) -> None:
        if self.trainers is None:
            self.trainers = Trainers(max(1, min(self.jobs, runs)), self.verbose, self.gpu_memory_mb)

    def dispatch(self, study_id: str, run: RunSpec, status: RunStatus) -> None:
        self.prepare(1)
        future = self.trainers.pool.submit(_train_in_child, run.model_dump_json(), self.store.url)
        self.futures[future] = run.run_id

    def started(self) -> set[str]:
        # Only runs a training process has taken: reading every pending run's status.json
        # twice a second would take CPU from the training processes on a small machine.
        return {run_id for future, run_id in self.futures.items() if future.running() or future.done()}

    def ended(self) -> dict[str, str | None]:
        ended = {}
        for future, run_id in self.futures.items():
            if future in self.reported or not future.done():
                continue
            self.reported.add(future)
            _raise_device_error(future)
            ended[run_id] = _error(future)
        return ended

    def wait(self, seconds: float) -> None:
        pending = [f for f in self.futures if f not in self.reported and not f.done()]
        if pending:
            wait(pending, timeout=seconds, return_when=FIRST_COMPLETED)

    def close(self, wait: bool = True) -> None:
        if self.own and self.trainers is not None:
            self.trainers.close(wait=wait)


def run_plan(
    plan: Plan,
    store: Store,
    jobs: int = 1,
    on_progress: Callable[[StudyStatus], None] | None = None,
    verbose: bool = False,
    poll_seconds: float = 0.5,
    trainers: Trainers | None = None,
    gpu_memory_mb: int | None = None,
) -> StudyStatus:
    """Train every run of `plan` not already stored, through the study driver, and return the
    study's final status. With `trainers`, the caller owns (and closes) the training processes."""
    dispatcher = LocalDispatcher(store, jobs, verbose, trainers, gpu_memory_mb)
    try:
        driver = StudyDriver(store, dispatcher, poll_seconds=poll_seconds)
        return driver.run(plan.document(), plan.runs, on_progress)
    finally:
        dispatcher.close()


def _raise_device_error(future: Future) -> None:
    """A training process that cannot train as configured (pinned to a GPU TensorFlow does not
    list, a cap it refused) stops `ablate run`: every run would fail the same way."""
    from workers.gpus import DeviceError

    if not future.cancelled() and isinstance(future.exception(), DeviceError):
        raise future.exception()


def _error(future: Future) -> str | None:
    """Why the attempt ended without a result, if it raised or its process died."""
    if future.cancelled():
        return "cancelled before it started"
    exc = future.exception()
    if exc is not None:
        return f"{type(exc).__name__}: {exc}"
    result = future.result()
    return result.get("error") if isinstance(result, dict) else None


# Child process side


_VERBOSE = False
"""This training process's -v: TensorFlow's start-up lines are echoed (else logged at debug)."""


def _init_child(verbose: bool, placement: list | None = None, slots=None) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    if placement:
        with slots.get_lock():
            slot, slots.value = slots.value, slots.value + 1
        for name, value in placement[slot % len(placement)].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not verbose:
        # TensorFlow's C++ start-up chatter would tear the progress bar; errors still reach
        # the user through each run's status.json and the summary.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    _die_with_parent()
    # Ctrl-C reaches the whole process group; let the parent decide, children just stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from service.logs import configure_logging

    configure_logging(level="info" if verbose else "warning")


def _warm_up() -> None:
    _load_tensorflow()  # before the first run arrives


def _load_tensorflow() -> None:
    """TensorFlow and Keras, their C++ start-up lines kept out of the terminal (shown with -v);
    a second call does nothing."""
    from workers.quiet_start import load_tensorflow

    load_tensorflow(echo=_VERBOSE)
    import workers.runner  # noqa: F401


def _die_with_parent() -> None:
    # A child must not train on after `ablate run` was killed: ask Linux to SIGKILL it then.
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _train_in_child(run_json: str, store_url: str) -> dict:
    from service.identity import RunSpec
    from service.settings import get_settings

    _load_tensorflow()
    from workers.run_options import RunOptions
    from workers.runner import run  # the lazy import DESIGN.md allows: only children train

    # The training process reads the settings itself (it was spawned with this environment and
    # any GPU placement `Trainers` gave it); `ablate run` allows any model factory: the spec is
    # the user's own.
    settings = get_settings()
    spec = RunSpec.model_validate_json(run_json)
    store = open_store(store_url, settings.store_outage_seconds)
    result = run(spec, store, options=RunOptions.from_settings(settings, worker=False))
    return {"state": result.state, "reused": result.reused, "error": result.error}

"""The embedded executor behind `ablate run`: trains a plan's runs on this machine.

Runs train in child processes (spawned, never forked, so TensorFlow is imported only where it
trains), `jobs` at a time, each calling the same `workers.runner.run` a Celery worker calls. The
parent process never imports TensorFlow; it follows progress by reading each run's `status.json`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from service.lifecycle import TERMINAL_STATES, read_metrics, read_status, run_key
from service.plan import Plan
from service.store import Store, open_store
from service.study_record import save_study


@dataclass
class RunOutcome:
    run_id: str
    state: str
    reused: bool = False
    error: str | None = None


@dataclass
class Progress:
    """What the caller is shown while a study trains."""

    total: int
    done: int = 0
    reused: int = 0
    running: dict[str, tuple[int, int]] = field(default_factory=dict)
    """run_id -> (epoch, epochs) of runs training now."""
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)


def write_study(plan: Plan, store: Store) -> None:
    """study.json, and run.json of every run not yet described (the report reads them)."""
    save_study(store, plan.study_id, plan.study_document())  # never over another study's
    for run_id, run in plan.runs.items():
        if not store.exists(run_key(run_id, "run.json")):
            store.put_json(run_key(run_id, "run.json"), {"run_id": run_id, **run.model_dump(mode="json")})


def stored_outcomes(plan: Plan, store: Store) -> dict[str, RunOutcome]:
    """Runs whose final result is already stored: reused, not retrained."""
    outcomes = {}
    for run_id in plan.runs:
        if read_metrics(store, run_id) is not None:
            outcomes[run_id] = RunOutcome(run_id, "succeeded", reused=True)
            continue
        status = read_status(store, run_id)
        if status is not None and status.state in TERMINAL_STATES:
            outcomes[run_id] = RunOutcome(run_id, status.state, reused=True, error=status.error)
    return outcomes


class Trainers:
    """The training processes, `jobs` of them. Started before the plan is built, so that their
    TensorFlow import (seconds) overlaps the parent's planning instead of following it."""

    def __init__(self, jobs: int = 1, verbose: bool = False) -> None:
        from service.settings import get_settings
        from workers.gpus import local_placement  # nvidia-smi only: no TensorFlow here

        # With GPUs each process is pinned to one and capped as `ablate worker` does (N
        # uncapped processes would all take GPU 0); a slot counter hands out the placements.
        placement = local_placement(jobs, get_settings().gpu_memory_mb)
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


def run_plan(
    plan: Plan,
    store: Store,
    jobs: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    verbose: bool = False,
    poll_seconds: float = 0.5,
    trainers: Trainers | None = None,
) -> Progress:
    """Train every run of `plan` not already stored; return the outcome of each run. With
    `trainers`, the caller owns (and closes) the training processes."""
    write_study(plan, store)
    progress = Progress(total=plan.run_count)
    progress.outcomes = stored_outcomes(plan, store)
    progress.done = progress.reused = len(progress.outcomes)
    pending = [run_id for run_id in plan.runs if run_id not in progress.outcomes]
    notify = on_progress or (lambda _: None)
    notify(progress)
    if not pending:
        return progress

    own = trainers is None
    trainers = trainers or Trainers(max(1, min(jobs, len(pending))), verbose)
    try:
        futures: dict[Future, str] = {
            trainers.pool.submit(_train_in_child, plan.runs[run_id].model_dump_json(), store.url): run_id
            for run_id in pending
        }
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, timeout=poll_seconds, return_when=FIRST_COMPLETED)
            for future in finished:
                _raise_device_error(future)
                run_id = futures[future]
                progress.running.pop(run_id, None)
                progress.outcomes[run_id] = _outcome(run_id, future)
                progress.done += 1
            # Only runs a training process has taken: reading every pending run's status.json
            # twice a second would take CPU from the training processes on a small machine.
            _poll_running(progress, store, [futures[f] for f in remaining if f.running()])
            notify(progress)
    finally:
        if own:
            trainers.close()
    return progress


def _raise_device_error(future: Future) -> None:
    """A training process that cannot train as configured (pinned to a GPU TensorFlow does not
    list, a cap it refused) stops `ablate run`: every run would fail the same way."""
    from workers.gpus import DeviceError

    if not future.cancelled() and isinstance(future.exception(), DeviceError):
        raise future.exception()


def _outcome(run_id: str, future: Future) -> RunOutcome:
    try:
        result = future.result()
    except Exception as exc:  # the child raised, or died
        return RunOutcome(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
    return RunOutcome(run_id, result["state"], reused=result["reused"], error=result["error"])


def _poll_running(progress: Progress, store: Store, run_ids: list[str]) -> None:
    for run_id in run_ids:
        status = read_status(store, run_id)
        if status is not None and status.state == "running":
            progress.running[run_id] = (status.epoch, status.epochs)


# Child process side


def _init_child(verbose: bool, placement: list | None = None, slots=None) -> None:
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
    import workers.runner  # noqa: F401  (TensorFlow and Keras, before the first run arrives)


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
    from workers.runner import run  # the lazy import DESIGN.md allows: only children train

    spec = RunSpec.model_validate_json(run_json)
    result = run(spec, open_store(store_url))
    return {"state": result.state, "reused": result.reused, "error": result.error}

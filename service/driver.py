"""One study driver for both modes: plan -> what is stored or in flight -> dispatch -> follow.

`ablate run` and `ablate submit` / `AblationClient` drive a study through the same loop; only
the `Dispatcher` differs: a pool of local training processes (service/embedded.py) or Celery's
`send_task` (service/client.py) — the same move as KerasTuner swapping its oracle for a client
with the same methods. The store is the source of truth throughout: a run whose result is
stored is reused, a run the dispatcher already has in flight is followed, not sent twice, and
progress is read from the runs' `status.json`.

A study may run in several rounds, each planned from the stored results of the previous ones
(a staged diagnosis). Each round is a document in the store (`studies/{id}/rounds/NNN.json`),
written before its runs are dispatched, and `study.json` holds the union of the rounds so far.
A driver that died is resumed by running the same command: the stored rounds are replayed
(their stored runs reused, those in flight followed) before the next round is planned.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from service.errors import KeyNotFound
from service.identity import RunSpec
from service.lifecycle.documents import RoundDocument, RunStatus, StudyDocument, Variant, utcnow
from service.lifecycle.states import RunState
from service.lifecycle.storage import (
    effective_state,
    read_document,
    round_key,
    run_key,
    write_document,
    write_run_document,
    write_status,
)
from service.store.base import Store
from service.study_record import save_study


class Dispatcher(ABC):
    """Where a study's runs train; the only part of the driver that differs between modes."""

    trusts_active: bool = True
    """A run stored as queued or running is in flight (a queue message owns it) and is not sent
    again. False where nothing outlives the driving process: its runs are sent again."""

    @abstractmethod
    def check(self) -> None:
        """Raise before anything is written when runs cannot be dispatched (broker down)."""

    def prepare(self, runs: int) -> None:  # noqa: B027  (an optional hook)
        """About to dispatch `runs` runs (a local pool starts no more processes than that)."""

    def message_id(self, run: RunSpec) -> str | None:
        """The id of the message that will carry `run`, stored in its status (a worker skips
        an older message for the run); None where there is no message."""
        return None

    @abstractmethod
    def dispatch(self, study_id: str, run: RunSpec, status: RunStatus) -> None:
        """Start training `run`, whose fresh `queued` status (`status`) is stored."""

    def started(self) -> set[str] | None:
        """Runs an attempt may have taken since they were dispatched (their status is worth
        reading); None when the dispatcher cannot tell, so every unfinished run is read."""
        return None

    def ended(self) -> dict[str, str | None]:
        """Runs whose attempt ended in this process since the last call, with the error that
        ended it (None when it returned): a run left active after its attempt ended has died."""
        return {}

    def wait(self, seconds: float) -> None:
        """Pause between two reads of the store; may return early when an attempt ends."""
        time.sleep(seconds)

    @abstractmethod
    def close(self) -> None:
        """Release what the dispatcher holds (training processes, connections)."""


@dataclass(frozen=True)
class SubmitReport:
    queued: int
    already_queued: int
    reused: int


@dataclass
class VariantProgress:
    name: str
    counts: Counter = field(default_factory=Counter)
    running_epochs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class StudyStatus:
    """Where a study's runs are: counts per state, epochs of running runs, an ETA."""

    study_id: str
    total: int
    counts: Counter
    """Runs per `RunState` (a run shared by two variants counts once)."""
    variants: list[VariantProgress]
    eta_seconds: float | None
    running: dict[str, tuple[int, int]] = field(default_factory=dict)
    """run_id -> (epoch, epochs) of the runs training now."""
    errors: dict[str, str] = field(default_factory=dict)
    """run_id -> error of the failed runs."""
    reused: int = 0
    """Runs whose result was already stored when the driver started them."""

    @property
    def finished(self) -> int:
        return sum(count for state, count in self.counts.items() if RunState(state).is_final)

    @property
    def complete(self) -> bool:
        return self.finished == self.total


class RunsView:
    """The effective states of a set of runs, read from the store as cheaply as a follower can:
    a run seen final is never read again."""

    def __init__(self, store: Store, run_ids: list[str]) -> None:
        self.store = store
        self.run_ids = list(dict.fromkeys(run_ids))
        self.states: dict[str, RunState] = {}
        self.statuses: dict[str, RunStatus | None] = {}

    def refresh(self, only: set[str] | None = None) -> None:
        for run_id in self.run_ids:
            if run_id in self.states and self.states[run_id].is_final:
                continue
            if only is not None and run_id not in only and run_id in self.states:
                continue
            state, status = effective_state(self.store, run_id)
            self.states[run_id], self.statuses[run_id] = state, status

    def mark(self, run_id: str, state: RunState, status: RunStatus | None) -> None:
        self.states[run_id], self.statuses[run_id] = state, status

    def status(self, study_id: str, variants: list[Variant]) -> StudyStatus:
        counts = Counter(self.states.get(run_id, RunState.QUEUED) for run_id in self.run_ids)
        progress = []
        for variant in variants:
            item = VariantProgress(variant.name)
            for run_id in variant.run_ids:
                state = self.states.get(run_id, RunState.QUEUED)
                item.counts[state] += 1
                status = self.statuses.get(run_id)
                if state is RunState.RUNNING and status is not None:
                    item.running_epochs.append((status.epoch, status.epochs))
            progress.append(item)
        running = {
            run_id: (status.epoch, status.epochs)
            for run_id, status in self.statuses.items()
            if status is not None and self.states.get(run_id) is RunState.RUNNING
        }
        errors = {
            run_id: status.error or "failed"
            for run_id, status in self.statuses.items()
            if self.states.get(run_id) is RunState.FAILED and status is not None
        }
        return StudyStatus(study_id, len(self.run_ids), counts, progress, self._eta(), running, errors)

    def _eta(self) -> float | None:
        """Seconds left: the epochs still to train, at the mean epoch time seen so far, shared
        among the runs training at once."""
        epoch_seconds = [
            record.epoch_seconds
            for status in self.statuses.values()
            if status is not None
            for record in status.history
        ]
        unfinished = [run_id for run_id in self.run_ids if not self.states.get(run_id, RunState.QUEUED).is_final]
        if not unfinished:
            return 0.0
        if not epoch_seconds:
            return None
        left = 0
        for run_id in unfinished:
            status = self.statuses.get(run_id)
            if status is not None:
                left += max(0, status.epochs - status.epoch)
        parallel = max(1, sum(1 for run_id in unfinished if self.states.get(run_id) is RunState.RUNNING))
        return sum(epoch_seconds) / len(epoch_seconds) * left / parallel


class StudyDriver:
    """Drives a study's runs through a dispatcher and follows them in the store."""

    def __init__(self, store: Store, dispatcher: Dispatcher | None = None, poll_seconds: float = 2.0) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds

    # -- one round ------------------------------------------------------------------------

    def start(self, document: StudyDocument, runs: dict[str, RunSpec]) -> SubmitReport:
        """Store the study's document, then dispatch every run of `runs` that is neither stored
        nor (for a dispatcher whose messages outlive us) in flight. Idempotent."""
        if self.dispatcher is None:
            raise ValueError("a driver without a dispatcher can only follow")
        self.dispatcher.check()  # both ends reachable before anything is written
        self.store.check()
        save_study(self.store, document.study_id, document.model_dump(mode="json"))
        already = reused = 0
        pending: list[tuple[RunSpec, RunStatus | None]] = []
        for run_id, run in runs.items():
            state, status = effective_state(self.store, run_id)
            if state.is_reusable:
                reused += 1
                if not self.store.exists(run_key(run_id, "run.json")):
                    write_run_document(self.store, run)  # the report reads it
            elif state.is_active and status is not None and self.dispatcher.trusts_active:
                already += 1
            else:
                pending.append((run, status))
        if pending:
            self.dispatcher.prepare(len(pending))
        for run, status in pending:
            run_id = run.run_id
            write_run_document(self.store, run)
            fresh = RunStatus.after(
                status, run_id, RunState.QUEUED, queued_at=utcnow(),
                epochs=run.config.training.epochs, task_id=self.dispatcher.message_id(run),
            )
            # Written before the send, or a worker's quick "running" could be overwritten.
            write_status(self.store, fresh)
            try:
                self.dispatcher.dispatch(document.study_id, run, fresh)
            except BaseException:
                # Not sent: the run must not look in flight, or no later submission sends it.
                _restore_status(self.store, run_id, status)
                raise
        return SubmitReport(len(pending), already, reused)

    def snapshot(self, document: StudyDocument) -> StudyStatus:
        """The study's status now, read once from the store."""
        view = RunsView(self.store, document.run_ids)
        view.refresh()
        return view.status(document.study_id, document.variants)

    def follow(
        self,
        document: StudyDocument,
        on_progress: Callable[[StudyStatus], None] | None = None,
        timeout: float | None = None,
        run_ids: list[str] | None = None,
        reused: int = 0,
    ) -> StudyStatus:
        """Poll the store until every run of `document` (or of `run_ids`) is final."""
        view = RunsView(self.store, run_ids if run_ids is not None else document.run_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            ended = self.dispatcher.ended() if self.dispatcher else {}
            started = self.dispatcher.started() if self.dispatcher else None
            if first or started is None:
                view.refresh()
            else:
                view.refresh(only=started | set(ended))
            first = False
            for run_id, error in ended.items():
                if run_id in view.states and view.states[run_id].is_active:
                    view.mark(run_id, *self._died(run_id, view.statuses.get(run_id), error))
            status = view.status(document.study_id, document.variants)
            status.reused = reused
            if on_progress is not None:
                on_progress(status)
            if status.complete:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"study {document.study_id}: {status.finished}/{status.total} runs finished after {timeout}s"
                )
            self._sleep()

    def _sleep(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wait(self.poll_seconds)
        else:
            time.sleep(self.poll_seconds)

    def _died(self, run_id: str, status: RunStatus | None, error: str | None) -> tuple[RunState, RunStatus]:
        """An attempt ended in this process and left its run queued or running: it died before
        it could record why. Record it as failed, so that the study ends and says so."""
        state, status = effective_state(self.store, run_id)  # it may have finished meanwhile
        if not state.is_active:
            return state, status
        failed = RunStatus.after(
            status, run_id, RunState.FAILED,
            epochs=status.epochs if status else 0,
            error=error or "the training process ended without recording a result",
        )
        write_status(self.store, failed)
        return RunState.FAILED, failed

    def run(
        self,
        document: StudyDocument,
        runs: dict[str, RunSpec],
        on_progress: Callable[[StudyStatus], None] | None = None,
    ) -> StudyStatus:
        """Dispatch what is not stored, then follow the study to the end."""
        report = self.start(document, runs)
        return self.follow(document, on_progress, reused=report.reused)

    # -- rounds ---------------------------------------------------------------------------

    def run_rounds(
        self,
        study_id: str,
        plan_round: Callable[[list[RoundDocument]], RoundDocument | None],
        base: StudyDocument,
        on_round: Callable[[RoundDocument, SubmitReport], None] | None = None,
        on_progress: Callable[[StudyStatus], None] | None = None,
    ) -> list[RoundDocument]:
        """Run the study round after round until `plan_round` (given the rounds done, whose
        runs are all final) returns None. Rounds already stored are replayed, not re-planned."""
        done: list[RoundDocument] = []
        while True:
            planned = self.stored_round(study_id, len(done))
            if planned is None:
                planned = plan_round(done)
                if planned is None:
                    return done
                planned = planned.model_copy(update={"study_id": study_id, "index": len(done)})
                write_document(self.store, round_key(study_id, planned.index), planned)
            document = merge_rounds(base, [*done, planned])
            report = self.start(document, planned.runs)
            if on_round is not None:
                on_round(planned, report)
            self.follow(document, on_progress, run_ids=list(planned.runs), reused=report.reused)
            done.append(planned)

    def stored_round(self, study_id: str, index: int) -> RoundDocument | None:
        try:
            return read_document(self.store, round_key(study_id, index), RoundDocument)
        except KeyNotFound:
            return None

    def stored_rounds(self, study_id: str) -> list[RoundDocument]:
        rounds = []
        while (found := self.stored_round(study_id, len(rounds))) is not None:
            rounds.append(found)
        return rounds


def merge_rounds(base: StudyDocument, rounds: list[RoundDocument]) -> StudyDocument:
    """The study document of `base` (its spec) with the variants of every round: a variant
    planned again (more seeds for it) keeps one entry with the union of its runs."""
    variants: dict[str, Variant] = {}
    for planned in rounds:
        for variant in planned.variants:
            known = variants.get(variant.name)
            if known is None:
                variants[variant.name] = variant.model_copy(deep=True)
            else:
                known.run_ids.extend(r for r in variant.run_ids if r not in known.run_ids)
    run_ids = sorted({run_id for variant in variants.values() for run_id in variant.run_ids})
    return base.model_copy(update={"variants": list(variants.values()), "run_ids": run_ids})


def _restore_status(store: Store, run_id: str, previous: RunStatus | None) -> None:
    """Put back the status a run had before a dispatch that failed (none: no status at all)."""
    if previous is None:
        store.delete(run_key(run_id, "status.json"))
    else:
        store.put_json(run_key(run_id, "status.json"), previous.model_dump(mode="json"))

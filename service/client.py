"""The Python client of the distributed mode: submit a study, follow it, cancel it, collect results.

    client = AblationClient(broker_url="redis://...", store_url="s3://bucket/ablate")
    study = client.submit("examples/seed-study.yaml")
    study.wait()
    pandas.DataFrame(study.results())

Runs are sent to the queue by task name (the client never imports training code). The store is
the source of truth: submitting the same spec again gives the same study, skips runs already
stored and does not queue twice a run that is queued or running.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu.exceptions
import redis

from service.control import RunControl, redis_client
from service.errors import AblateError, KeyNotFound
from service.lifecycle import (
    TERMINAL_STATES,
    RunStatus,
    read_metrics,
    read_status,
    run_key,
    study_key,
    utcnow,
    write_status,
)
from service.plan import Plan, build_plan
from service.queue import TRAIN_TASK, make_celery
from service.settings import Settings, get_settings
from service.spec import StudySpec, load_spec, spec_from_data
from service.store import Store, open_store
from service.studies import StudyNotFound, resolve_study_id
from service.study_record import save_study

__all__ = ["AblationClient", "BrokerError", "Study", "StudyNotFound", "StudyStatus"]

FINISHED_STATES = frozenset({"succeeded", "diverged", "failed", "cancelled"})


class BrokerError(AblateError):
    """The broker (Redis) cannot be reached or refused us."""


@dataclass
class VariantProgress:
    name: str
    counts: Counter = field(default_factory=Counter)
    running_epochs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class StudyStatus:
    study_id: str
    total: int
    counts: Counter
    """Runs per state (a run shared by two variants counts once)."""
    variants: list[VariantProgress]
    eta_seconds: float | None

    @property
    def finished(self) -> int:
        return sum(self.counts[state] for state in FINISHED_STATES)

    @property
    def complete(self) -> bool:
        return self.finished == self.total


@dataclass(frozen=True)
class SubmitReport:
    queued: int
    already_queued: int
    reused: int


class Study:
    """A submitted study, read back from the store."""

    def __init__(self, study_id: str, document: dict[str, Any], store: Store, control: RunControl | None) -> None:
        self.study_id = study_id
        self.document = document
        self.store = store
        self.control = control
        self.submit_report: SubmitReport | None = None

    @property
    def run_ids(self) -> list[str]:
        return list(self.document["run_ids"])

    @property
    def variants(self) -> list[dict[str, Any]]:
        return list(self.document["variants"])

    def _statuses(self) -> dict[str, RunStatus | None]:
        return {run_id: read_status(self.store, run_id) for run_id in self.run_ids}

    def status(self) -> StudyStatus:
        statuses = self._statuses()
        states = {run_id: (s.state if s else "queued") for run_id, s in statuses.items()}
        for run_id, state in states.items():
            if state != "succeeded" and self.store.exists(run_key(run_id, "metrics.json")):
                states[run_id] = "succeeded"
        variants = []
        for variant in self.variants:
            progress = VariantProgress(variant["name"])
            for run_id in variant["run_ids"]:
                progress.counts[states[run_id]] += 1
                status = statuses[run_id]
                if states[run_id] == "running" and status is not None:
                    progress.running_epochs.append((status.epoch, status.epochs))
            variants.append(progress)
        counts = Counter(states.values())
        return StudyStatus(self.study_id, len(states), counts, variants, _eta(statuses, counts))

    def wait(
        self,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
        on_progress: Callable[[StudyStatus], None] | None = None,
    ) -> StudyStatus:
        """Block until every run has finished (succeeded, diverged, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if on_progress is not None:
                on_progress(status)
            if status.complete:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"study {self.study_id}: {status.finished}/{status.total} runs finished after {timeout}s"
                )
            time.sleep(poll_seconds)

    def cancel(self) -> int:
        """Queued runs will not start; running runs stop at their next epoch end. Returns how
        many runs were cancelled. Submitting the spec again resumes them."""
        if self.control is None:
            raise AblateError("cancelling needs the broker (Redis)")
        pending = [run_id for run_id, s in self._statuses().items() if s is None or s.state in ("queued", "running")]
        pending = [run_id for run_id in pending if not self.store.exists(run_key(run_id, "metrics.json"))]
        try:
            self.control.cancel(pending)
        except redis.RedisError as exc:
            raise BrokerError(f"cannot reach the broker to cancel: {type(exc).__name__}: {exc}") from None
        for run_id in pending:
            status = read_status(self.store, run_id)
            if status is None or status.state == "queued":
                task_id = status.task_id if status else None
                write_status(self.store, RunStatus.after(status, run_id, "cancelled", task_id=task_id))
        return len(pending)

    def results(self) -> list[dict[str, Any]]:
        """One row per variant and run, ready for `pandas.DataFrame(rows)`."""
        rows = []
        for variant in self.variants:
            for run_id in variant["run_ids"]:
                metrics = read_metrics(self.store, run_id)
                status = read_status(self.store, run_id) if metrics is None else None
                row: dict[str, Any] = {
                    "study_id": self.study_id,
                    "variant": variant["name"],
                    "factor": variant["factor"],
                    "run_id": run_id,
                    "state": "succeeded" if metrics else (status.state if status else "queued"),
                }
                if metrics is not None:
                    last = metrics.history[-1]
                    row.update(
                        seed=metrics.seed,
                        test_accuracy=metrics.test.accuracy,
                        test_loss=metrics.test.loss,
                        epochs=metrics.epochs_run,
                        train_accuracy=last.accuracy,
                        val_accuracy=last.val_accuracy,
                        val_loss=last.val_loss,
                        fit_seconds=metrics.timings.get("fit_seconds"),
                    )
                else:
                    row.update(seed=None, test_accuracy=None, test_loss=None, epochs=status.epoch if status else 0)
                rows.append(row)
        return rows


class AblationClient:
    """Submits studies to the queue and reads them back from the store."""

    def __init__(
        self,
        broker_url: str | None = None,
        store_url: str | None = None,
        queue: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or get_settings()
        overrides = {k: v for k, v in {"broker_url": broker_url, "store": store_url, "queue": queue}.items() if v}
        self.settings = Settings(**{**settings.model_dump(), **overrides}) if overrides else settings
        self.store = open_store(self.settings.store)
        self._celery = None
        self._control: RunControl | None = None

    @property
    def celery(self):
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    @property
    def control(self) -> RunControl:
        if self._control is None:
            self._control = RunControl(redis_client(self.settings))
        return self._control

    def plan(self, spec: StudySpec | str | Path | dict) -> Plan:
        if isinstance(spec, (str, Path)):
            return build_plan(load_spec(spec), source=str(spec))
        if isinstance(spec, dict):
            spec = spec_from_data(spec)
        return build_plan(spec)

    def submit(self, spec: StudySpec | str | Path | dict) -> Study:
        """Queue every run of `spec` that is not stored, queued or running; idempotent."""
        return self.submit_plan(self.plan(spec))

    def submit_plan(self, plan: Plan) -> Study:
        with self._broker_errors():
            return self._submit_plan(plan)

    @contextlib.contextmanager
    def _broker_errors(self):
        """Broker failures (refused connection, bad certificate, wrong password) become one clear
        error naming the broker, without its password."""
        try:
            yield
        except (redis.RedisError, kombu.exceptions.KombuError, OSError) as exc:
            if isinstance(exc, AblateError):
                raise
            raise BrokerError(
                f"cannot use the broker {self.settings.broker_url_redacted()}: {type(exc).__name__}: {exc} "
                "(check ABLATE_BROKER_URL, ABLATE_REDIS_PASSWORD and, for rediss://, ABLATE_BROKER_CA_CERTS)"
            ) from None

    def _submit_plan(self, plan: Plan) -> Study:
        # Both ends must be reachable before anything is written or queued.
        self.control.client.ping()
        check = getattr(self.store, "check", None)
        if check is not None:
            check()
        document = plan.study_document()
        save_study(self.store, plan.study_id, document)  # never over another study's
        queued = already = reused = 0
        for run_id, run in plan.runs.items():
            status = read_status(self.store, run_id)
            if self.store.exists(run_key(run_id, "metrics.json")) or (status and status.state in TERMINAL_STATES):
                reused += 1
                continue
            if status is not None and status.state in ("queued", "running"):
                already += 1
                continue
            self.control.uncancel([run_id])
            task_id = f"{run_id}-{uuid.uuid4().hex[:12]}"
            self.store.put_json(run_key(run_id, "run.json"), {"run_id": run_id, **run.model_dump(mode="json")})
            fresh = RunStatus.after(status, run_id, "queued", queued_at=utcnow(), task_id=task_id)
            write_status(self.store, fresh)
            self.celery.send_task(
                TRAIN_TASK,
                kwargs={"run": run.model_dump(mode="json"), "study_id": plan.study_id, "store": self.store.url},
                queue=self.settings.queue,
                task_id=task_id,
            )
            queued += 1
        study = Study(plan.study_id, document, self.store, self.control)
        study.submit_report = SubmitReport(queued, already, reused)
        return study

    def study(self, study_id: str) -> Study:
        """The stored study `study_id` names: its full id, a unique prefix of it, or the path of
        its spec file (`StudyNotFound` for none or several, naming them)."""
        study_id = resolve_study_id(self.store, study_id)
        try:
            document = self.store.get_json(study_key(study_id, "study.json"))
        except KeyNotFound:
            raise StudyNotFound(f"no study {study_id} in {self.store.location()}") from None
        return Study(study_id, document, self.store, self._control_or_none())

    def _control_or_none(self) -> RunControl | None:
        try:
            return self.control
        except Exception:  # reading a study must work without a broker
            return None


def _eta(statuses: dict[str, RunStatus | None], counts: Counter) -> float | None:
    durations = []
    for status in statuses.values():
        if status is not None and status.state == "succeeded" and status.history:
            durations.append(sum(h.epoch_seconds for h in status.history))
    remaining = counts["queued"] + counts["running"]
    if not durations or remaining == 0:
        return None if remaining else 0.0
    parallel = max(1, counts["running"])
    return sum(durations) / len(durations) * remaining / parallel

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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kombu.exceptions
import redis

from service.control import RunControl, redis_client
from service.datasets.options import DataOptions
from service.driver import Dispatcher, StudyDriver, StudyStatus, SubmitReport, VariantProgress
from service.errors import AblateError, KeyNotFound
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus, StudyDocument, TrainMessage
from service.lifecycle.states import RunState
from service.lifecycle.storage import effective_states, read_document, read_study, study_key, write_status
from service.plan import Plan, build_plan
from service.queue import TRAIN_TASK, make_celery
from service.settings import Settings, get_settings
from service.spec import StudySpec, load_spec, spec_from_data
from service.store import Store, open_store
from service.studies import StudyNotFound, resolve_study_id

if TYPE_CHECKING:
    from service.report.models import Summary

__all__ = [
    "AblationClient",
    "BrokerError",
    "Study",
    "StudyNotFound",
    "StudyStatus",
    "SubmitReport",
    "VariantProgress",
]


class BrokerError(AblateError):
    """The broker (Redis) cannot be reached or refused us."""


@contextlib.contextmanager
def broker_errors(broker: str):
    """Broker failures (refused connection, bad certificate, wrong password) become one clear
    `BrokerError` naming the broker (`broker`: its URL without credentials)."""
    try:
        yield
    except (redis.RedisError, kombu.exceptions.KombuError, OSError) as exc:
        if isinstance(exc, AblateError):
            raise
        raise BrokerError(
            f"cannot use the broker {broker}: {type(exc).__name__}: {exc} "
            "(check ABLATE_BROKER_URL, ABLATE_REDIS_PASSWORD and, for rediss://, ABLATE_BROKER_CA_CERTS)"
        ) from None


class CeleryDispatcher(Dispatcher):
    """Dispatches runs to the workers: one `train_run` message each, sent by task name (the
    client never imports training code) to `queue`. A queued or running run has a message: not
    resent. A broker that cannot be used raises `BrokerError`."""

    trusts_active = True

    def __init__(self, celery, control: RunControl, store_url: str, queue: str, broker: str) -> None:
        self.celery = celery
        self.control = control
        self.store_url = store_url
        self.queue = queue
        self.broker = broker
        """The broker's URL without credentials, for messages."""

    @classmethod
    def of(cls, client: AblationClient) -> CeleryDispatcher:
        """The dispatcher of `client`: its Celery app, Redis client, store and queue."""
        settings = client.settings
        return cls(client.celery, client.control, client.store.url, settings.queue, settings.broker_url_redacted())

    def check(self) -> None:
        with broker_errors(self.broker):
            self.control.client.ping()

    def message_id(self, run: RunSpec) -> str:
        return f"{run.run_id}-{uuid.uuid4().hex[:12]}"

    def dispatch(self, study_id: str, run: RunSpec, status: RunStatus) -> None:
        message = TrainMessage.of(run, study_id, self.store_url)
        with broker_errors(self.broker):
            self.control.uncancel([run.run_id])  # a run submitted again after a cancel trains
            self.celery.send_task(
                TRAIN_TASK, kwargs=message.model_dump(mode="json"), queue=self.queue, task_id=status.task_id
            )

    def close(self) -> None:
        """The Celery app and the Redis client are the client's, closed with it."""


class Study:
    """A submitted study, read back from the store."""

    def __init__(self, study_id: str, document: StudyDocument, store: Store, control: RunControl | None) -> None:
        self.study_id = study_id
        self.document = document
        self.store = store
        self.control = control
        self.submit_report: SubmitReport | None = None

    @property
    def run_ids(self) -> list[str]:
        return list(self.document.run_ids)

    @property
    def variants(self) -> list[dict[str, Any]]:
        return [variant.model_dump(mode="json") for variant in self.document.variants]

    def status(self) -> StudyStatus:
        return StudyDriver(self.store).snapshot(self.document)

    def wait(
        self,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
        on_progress: Callable[[StudyStatus], None] | None = None,
    ) -> StudyStatus:
        """Block until every run has finished (succeeded, diverged, failed or cancelled)."""
        return StudyDriver(self.store, poll_seconds=poll_seconds).follow(self.document, on_progress, timeout=timeout)

    def cancel(self) -> int:
        """Queued runs will not start; running runs stop at their next epoch end. Returns how
        many runs were cancelled. Submitting the spec again resumes them."""
        if self.control is None:
            raise AblateError("cancelling needs the broker (Redis)")
        states = effective_states(self.store, self.run_ids)
        pending = [run_id for run_id, (state, _) in states.items() if state.is_active]
        try:
            self.control.cancel(pending)
        except redis.RedisError as exc:
            raise BrokerError(f"cannot reach the broker to cancel: {type(exc).__name__}: {exc}") from None
        for run_id in pending:
            state, status = effective_states(self.store, [run_id])[run_id]
            if state is RunState.QUEUED:
                task_id = status.task_id if status else None
                write_status(self.store, RunStatus.after(status, run_id, RunState.CANCELLED, task_id=task_id))
        return len(pending)

    def results(self) -> list[dict[str, Any]]:
        """One row per variant and run, ready for `pandas.DataFrame(rows)`: the columns of the
        report's runs.csv (config columns included)."""
        from service.report.rows import run_rows

        return run_rows(self.store, self.document)

    def report(self) -> Summary:
        """The report's findings, symptoms and next steps as typed objects (the report's
        summary.json), written first if the study has none yet."""
        from service.report import publish_report
        from service.report.models import Summary

        key = study_key(self.study_id, "report/summary.json")
        try:
            return read_document(self.store, key, Summary)
        except KeyNotFound:
            return publish_report(self.store, self.study_id)[0]


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
        self.store = open_store(self.settings.store, self.settings.store_outage_seconds)
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
        data = DataOptions.from_settings(self.settings)
        if isinstance(spec, (str, Path)):
            return build_plan(load_spec(spec), source=str(spec), data=data)
        if isinstance(spec, dict):
            spec = spec_from_data(spec)
        return build_plan(spec, data=data)

    def submit(self, spec: StudySpec | str | Path | dict) -> Study:
        """Queue every run of `spec` that is not stored, queued or running; idempotent."""
        return self.submit_plan(self.plan(spec))

    def submit_plan(self, plan: Plan) -> Study:
        with broker_errors(self.settings.broker_url_redacted()):
            return self._submit_plan(plan)

    def _submit_plan(self, plan: Plan) -> Study:
        document = plan.document()
        report = StudyDriver(self.store, CeleryDispatcher.of(self)).start(document, plan.runs)
        study = Study(plan.study_id, document, self.store, self.control)
        study.submit_report = report
        return study

    def study(self, study_id: str) -> Study:
        """The stored study `study_id` names: its full id, a unique prefix of it, or the path of
        its spec file (`StudyNotFound` for none or several, naming them)."""
        study_id = resolve_study_id(self.store, study_id)
        try:
            document = read_study(self.store, study_id)
        except KeyNotFound:
            raise StudyNotFound(f"no study {study_id} in {self.store.location()}") from None
        return Study(study_id, document, self.store, self._control_or_none())

    def _control_or_none(self) -> RunControl | None:
        try:
            return self.control
        except Exception:  # reading a study must work without a broker
            return None

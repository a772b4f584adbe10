"""`CeleryDispatcher` (service/client.py) on its own: the message it sends for a run, its ids, the
hooks it leaves to the driver, and a broker that fails. The Celery app and the Redis client are
stand-ins that record what they are asked (the boundary the dispatcher talks through); the
real broker and workers are tests/integration/test_distributed.py's business."""

from __future__ import annotations

import json
import re

import kombu.exceptions
import pytest
import redis

from service.client import AblationClient, BrokerError, CeleryDispatcher
from service.control import RunControl
from service.driver import StudyDriver
from service.identity import RunSpec
from service.lifecycle.documents import RunStatus, TrainMessage
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_status
from service.plan import build_plan
from service.queue import TRAIN_TASK
from service.settings import Settings
from service.spec import spec_from_data
from service.store.local import LocalStore
from tests.conftest import TINY

BROKER = "redis://:***@broker.example:6379/0"
STUDY_ID = "tiny-0123456789abcdef"


class FakeCelery:
    """Records each `send_task` call as (args, kwargs); raises `error` instead when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[tuple, dict]] = []
        self.error = error

    def send_task(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        self.sent.append((args, kwargs))


class FakeRedis:
    """The Redis commands the dispatcher's control uses, recorded; `error` is raised by each."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.error = error

    def _call(self, *call):
        if self.error is not None:
            raise self.error
        self.calls.append(call)

    def ping(self):
        self._call("ping")
        return True

    def delete(self, *keys):
        self._call("delete", *keys)


@pytest.fixture(scope="module")
def plan():
    return build_plan(spec_from_data({**TINY, "ablation": {"seeds": 2}}))


@pytest.fixture
def run(plan) -> RunSpec:
    return next(iter(plan.runs.values()))


def dispatcher(celery=None, control_redis=None, queue: str = "gpu-pool") -> CeleryDispatcher:
    control = RunControl(control_redis or FakeRedis(), namespace="ns")
    return CeleryDispatcher(celery or FakeCelery(), control, "s3://bucket/ablate", queue, BROKER)


def queued(run: RunSpec, task_id: str) -> RunStatus:
    return RunStatus.after(None, run.run_id, RunState.QUEUED, task_id=task_id)


def test_a_run_is_one_train_run_message_by_task_name_on_the_configured_queue(run):
    celery = FakeCelery()
    sender = dispatcher(celery)
    task_id = sender.message_id(run)
    sender.dispatch(STUDY_ID, run, queued(run, task_id))

    ((args, options),) = celery.sent
    assert args == (TRAIN_TASK,) == ("ablate.train_run",)
    # The queue and the message id are all it sets: no routing key, priority, countdown or
    # serializer of its own (the app's JSON-only configuration applies).
    assert set(options) == {"kwargs", "queue", "task_id"}
    assert options["queue"] == "gpu-pool"
    assert options["task_id"] == task_id
    document = options["kwargs"]
    assert json.loads(json.dumps(document)) == document  # JSON only: what the queue accepts
    message = TrainMessage.model_validate(document)  # extra="forbid": nothing else is sent
    assert set(document) == {"run", "study_id", "store"}
    assert message.study_id == STUDY_ID
    assert message.store == "s3://bucket/ablate"
    assert message.run == run.model_dump(mode="json")
    assert RunSpec.model_validate(message.run).run_id == run.run_id  # the worker finds the same run


def test_message_ids_are_the_run_id_and_a_fresh_suffix(run):
    sender = dispatcher()
    ids = {sender.message_id(run) for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(rf"{run.run_id}-[0-9a-f]{{12}}", task_id) for task_id in ids)


def test_a_dispatched_run_loses_an_earlier_cancellation_before_it_is_sent(run):
    order: list[str] = []

    class Recording(FakeRedis):
        def delete(self, *keys):
            order.append("uncancel")
            super().delete(*keys)

    class Sending(FakeCelery):
        def send_task(self, *args, **kwargs):
            order.append("send")
            super().send_task(*args, **kwargs)

    control_redis = Recording()
    dispatcher(Sending(), control_redis).dispatch(STUDY_ID, run, queued(run, f"{run.run_id}-000000000000"))
    assert control_redis.calls == [("delete", f"ns:cancel:{run.run_id}")]
    assert order == ["uncancel", "send"]


def test_the_driver_hooks_are_left_to_the_queue(run):
    celery, control_redis = FakeCelery(), FakeRedis()
    sender = dispatcher(celery, control_redis)
    assert sender.trusts_active is True  # a queued or running run has a message: not resent
    assert sender.prepare(10) is None
    assert sender.started() is None  # it cannot tell: the driver reads every unfinished run
    assert sender.ended() == {}  # no attempt ends in this process
    sender.close()  # the app and the Redis client are the client's
    assert celery.sent == [] and control_redis.calls == []


def test_check_pings_the_broker(run):
    control_redis = FakeRedis()
    dispatcher(control_redis=control_redis).check()
    assert control_redis.calls == [("ping",)]


def test_an_unreachable_broker_at_the_check_is_a_broker_error_without_the_password():
    refused = redis.ConnectionError("Error 111 connecting to broker.example:6379. Connection refused.")
    with pytest.raises(BrokerError) as caught:
        dispatcher(control_redis=FakeRedis(refused)).check()
    message = str(caught.value)
    assert message.startswith(f"cannot use the broker {BROKER}: ConnectionError: Error 111")
    assert "check ABLATE_BROKER_URL, ABLATE_REDIS_PASSWORD" in message


def test_a_broker_error_while_sending_is_a_broker_error_naming_the_broker(run):
    failing = FakeCelery(kombu.exceptions.OperationalError("Error 32 while writing to socket. Broken pipe."))
    with pytest.raises(BrokerError) as caught:
        dispatcher(failing).dispatch(STUDY_ID, run, queued(run, f"{run.run_id}-000000000000"))
    message = str(caught.value)
    assert message.startswith(f"cannot use the broker {BROKER}: OperationalError: Error 32 while writing")
    assert "(check ABLATE_BROKER_URL, ABLATE_REDIS_PASSWORD and, for rediss://, ABLATE_BROKER_CA_CERTS)" in message


def test_the_driver_stores_each_runs_message_id_and_sends_nothing_twice(tmp_path, plan):
    store = LocalStore(tmp_path / "store")
    celery = FakeCelery()
    driver = StudyDriver(store, dispatcher(celery))
    report = driver.start(plan.document(), plan.runs)
    assert report.queued == len(plan.runs) == len(celery.sent) == 2
    for _, options in celery.sent:
        run_id = RunSpec.model_validate(options["kwargs"]["run"]).run_id
        status = read_status(store, run_id)
        assert status.state is RunState.QUEUED and status.task_id == options["task_id"]

    again = driver.start(plan.document(), plan.runs)  # the runs are queued: their messages own them
    assert (again.queued, again.already_queued) == (0, 2) and len(celery.sent) == 2


def test_a_clients_dispatcher_uses_its_app_queue_store_and_redacted_broker(tmp_path):
    settings = Settings(
        store=str(tmp_path / "store"), queue="cpu-pool", broker_url="redis://:s3cret@broker.example:6379/0"
    )
    client = AblationClient(settings=settings)
    sender = CeleryDispatcher.of(client)
    assert sender.celery is client.celery and sender.control is client.control
    assert sender.queue == "cpu-pool" and sender.store_url == client.store.url
    assert sender.broker == BROKER and "s3cret" not in sender.broker

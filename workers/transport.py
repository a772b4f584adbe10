"""The worker's Redis transport: kombu's, except that a message it cannot read is rejected.

kombu's Redis channel pops a message (BRPOP) and decodes it inside the worker's event loop; a
message that is not JSON, a JSON value that is not a kombu envelope, or a body that is not valid
base64 raises there, and Celery stops the worker ("Unrecoverable error"). Anyone who can push to
the queue could stop every worker with one message. Here such a message is dropped (it was
already popped: dropping it is its acknowledgement), logged with its reason and counted in
Redis (`ablate:rejected_messages`), and the worker goes on consuming. So is a readable envelope
that Celery's own handling raises on (malformed headers): it is acknowledged, never redelivered.

Registered by `workers.app` for the redis:// and rediss:// schemes, in worker processes only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = structlog.get_logger(__name__)

REJECTED_COUNTER = "ablate:rejected_messages"
"""Redis key: how many messages the workers rejected as unreadable (all workers together)."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""A run's message is a few kilobytes; anything this large is not one of ours."""

_count_lock = threading.Lock()
rejected_here = 0
"""Messages rejected by this process (the Redis counter adds up every worker)."""


class PoisonMessage(Exception):
    """A queue message that is not a readable kombu envelope; the text says why."""


def check_envelope(payload: Any) -> None:
    """Raise `PoisonMessage` unless `payload` has the shape kombu's Redis messages have."""
    if not isinstance(payload, dict):
        raise PoisonMessage(f"the message is a JSON {type(payload).__name__}, not an envelope")
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        raise PoisonMessage("the envelope has no 'properties' mapping")
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not tag or len(tag) > 200:
        raise PoisonMessage("the envelope has no delivery tag")
    if not isinstance(properties.get("delivery_info", {}), dict):
        raise PoisonMessage("the envelope's delivery_info is not a mapping")
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise PoisonMessage("the envelope's headers are not a mapping")
    if isinstance(headers, dict) and headers.get("compression"):
        # Ablate never compresses its messages; a compressed body may inflate without bound.
        raise PoisonMessage("the envelope declares a compressed body")
    for name in ("content-type", "content-encoding"):
        if not isinstance(payload.get(name, ""), (str, type(None))):
            raise PoisonMessage(f"the envelope's {name} is not a string")
    body, encoding = payload.get("body"), properties.get("body_encoding")
    if body is None or body == "":
        return
    if not isinstance(body, str):
        raise PoisonMessage(f"the envelope's body is a {type(body).__name__}, not a string")
    if encoding == "base64":
        try:
            base64.b64decode(body.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise PoisonMessage("the envelope's body is not valid base64") from None
    elif encoding not in (None, "utf-8"):
        raise PoisonMessage(f"the envelope's body encoding {str(encoding)[:40]!r} is unknown")


def decode_item(item: bytes | str) -> dict[str, Any]:
    """A raw queue item -> its checked envelope; `PoisonMessage` for anything else."""
    if len(item) > MAX_MESSAGE_BYTES:
        raise PoisonMessage(f"the message is {len(item)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        text = item.decode("utf-8") if isinstance(item, bytes) else item
        payload = json.loads(text)
    except UnicodeDecodeError:
        raise PoisonMessage("the message is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise PoisonMessage(f"the message is not JSON ({str(exc)[:80]})") from None
    check_envelope(payload)
    return payload


class Message(virtual.Message):
    """kombu's message, built only from an envelope that passed `check_envelope`."""

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        check_envelope(payload)
        super().__init__(payload, channel=channel, **kwargs)


class Channel(kombu_redis.Channel):
    Message = Message

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except PoisonMessage as exc:
            self._rejected(str(exc))
            return True
        except (ValueError, RecursionError) as exc:
            # Raised by kombu's own decoding (`loads`) before a message exists: Celery's
            # handling of a message that exists is guarded in `basic_consume` below.
            if isinstance(exc, self._broker_errors()):
                raise
            self._rejected(_not_json(exc))
            return True

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        with self.conn_or_acquire() as client:
            for priority in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, priority))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    try:
                        return decode_item(item)
                    except PoisonMessage as exc:
                        self._rejected(str(exc))
            self._maybe_update_queues_expire(client, queue)
            raise kombu_redis.Empty()

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any):
        broker_errors = self._broker_errors()

        def guarded(message):
            try:
                return callback(message)
            except broker_errors:
                raise
            except Exception as exc:  # a readable envelope Celery cannot handle
                self._rejected(f"the worker could not handle it: {type(exc).__name__}: {str(exc)[:200]}")
                if not no_ack:
                    with contextlib.suppress(Exception):  # already acknowledged by Celery
                        message.ack()
                return None

        return super().basic_consume(queue, no_ack, guarded, consumer_tag, **kwargs)

    def _broker_errors(self) -> tuple[type[BaseException], ...]:
        transport = self.connection
        return tuple(transport.connection_errors) + tuple(transport.channel_errors)

    def _rejected(self, reason: str) -> None:
        global rejected_here
        with _count_lock:
            rejected_here += 1
        total = None
        # counting must never stop the worker
        with contextlib.suppress(Exception), self.conn_or_acquire() as client:
            total = int(client.incr(REJECTED_COUNTER))
        log.error("unreadable message rejected", reason=reason, rejected_here=rejected_here, rejected_total=total)


def _not_json(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the message is not UTF-8 text"
    return f"the message is not JSON ({str(exc)[:80]})"


class Transport(kombu_redis.Transport):
    Channel = Channel

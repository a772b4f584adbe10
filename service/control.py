"""Short-lived run control in Redis: cancellation flags. The store stays the source of truth for
states and results; Redis only carries the queue and flags like these."""

from __future__ import annotations

import ssl

import redis

from service.settings import Settings

CANCEL_TTL_SECONDS = 7 * 24 * 3600
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def redis_client(settings: Settings) -> redis.Redis:
    options: dict = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
    url = settings.broker_url_with_password()
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = _CERT_REQS[settings.broker_cert_reqs]
        if settings.broker_ca_certs:
            options["ssl_ca_certs"] = settings.broker_ca_certs
    return redis.Redis.from_url(url, **options)


class RunControl:
    def __init__(self, client: redis.Redis, namespace: str = "ablate") -> None:
        self.client = client
        self.namespace = namespace

    def _cancel_key(self, run_id: str) -> str:
        return f"{self.namespace}:cancel:{run_id}"

    def cancel(self, run_ids: list[str]) -> None:
        with self.client.pipeline() as pipe:
            for run_id in run_ids:
                pipe.set(self._cancel_key(run_id), "1", ex=CANCEL_TTL_SECONDS)
            pipe.execute()

    def uncancel(self, run_ids: list[str]) -> None:
        if run_ids:
            self.client.delete(*[self._cancel_key(run_id) for run_id in run_ids])

    def is_cancelled(self, run_id: str) -> bool:
        return bool(self.client.exists(self._cancel_key(run_id)))

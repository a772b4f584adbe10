"""Short-lived run control in Redis: cancellation flags and run leases. The store stays the
source of truth for states and results; Redis only carries the queue, flags and leases."""

from __future__ import annotations

import contextlib
import ssl
import threading

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


# Compare-and-set scripts: only the holder of a lease may renew or release it.
# Renew: extend our lease; if it expired (Redis was away longer than its ttl) and no newer
# attempt took a token since, take it back.
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if holder == false and redis.call('get', KEYS[2]) == ARGV[3] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RunLease:
    """At most one attempt of a run trains at a time.

    `acquire` takes a fencing token (a counter that only grows) and sets the lease with
    SET NX + expiry; a heartbeat thread renews it. `still_valid` is true while this attempt
    holds the lease and no newer token was issued, so a stale attempt (one whose lease expired
    while it was stalled) cannot commit over a newer result.
    """

    def __init__(
        self, client: redis.Redis, run_id: str, owner: str, ttl_seconds: float = 60.0, namespace: str = "ablate"
    ) -> None:
        self.client = client
        self.key = f"{namespace}:lease:{run_id}"
        self.fence_key = f"{namespace}:fence:{run_id}"
        self.owner = owner
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token: int | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str:
        return f"{self.owner}#{self.token}"

    def acquire(self) -> bool:
        if self.client.exists(self.key):
            return False
        self.token = int(self.client.incr(self.fence_key))
        if self.client.set(self.key, self.value, nx=True, px=self.ttl_ms):
            return True
        self.token = None
        return False

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def renew(self) -> bool:
        """False only when another attempt holds the lease or took a newer token."""
        return bool(self.client.eval(_RENEW, 2, self.key, self.fence_key, self.value, self.ttl_ms, self.token))

    def still_valid(self) -> bool:
        """False once a newer attempt provably owns the run; a Redis outage alone never makes
        an attempt stale (the heartbeat takes the lease back when Redis returns)."""
        if self.lost.is_set():
            return False
        try:
            if int(self.client.get(self.fence_key) or 0) != self.token:
                self.lost.set()
                return False
            return self.renew()
        except redis.RedisError:
            return True

    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.ttl_ms / 3000):
                try:
                    if not self.renew():
                        self.lost.set()
                        return
                except redis.RedisError:
                    continue  # Redis away: keep training, renew when it is back

        self._thread = threading.Thread(target=beat, name=f"lease-{self.key}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # else it expires on its own
            self.client.eval(_RELEASE, 1, self.key, self.value)

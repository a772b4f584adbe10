"""Run leases against a real redis-server: one holder at a time, fencing, outages."""

from __future__ import annotations

import time

import pytest

from service.control import RunLease
from tests.redis_server import RedisServer
from tests.waits import FLOOR_SECONDS, wait_until


@pytest.fixture
def redis_server(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server


def test_one_attempt_holds_a_run_at_a_time(redis_server):
    client = redis_server.client()
    first, second = RunLease(client, "r1", "A", 5), RunLease(client, "r1", "B", 5)
    assert first.acquire()
    assert not second.acquire()
    assert first.still_valid()
    first.release()
    assert second.acquire() and second.token > first.token
    assert not first.still_valid()  # a newer token was issued: the first attempt is stale


def test_an_expired_lease_taken_by_a_newer_attempt_fences_the_old_one(redis_server):
    client = redis_server.client()
    old = RunLease(client, "r2", "A", 1)
    assert old.acquire()
    time.sleep(1.2)  # stalled past its ttl, no heartbeat (time passing is the event, not a wait)
    new = RunLease(client, "r2", "B", 5)
    assert new.acquire()
    assert not old.still_valid()
    assert new.still_valid()


def test_an_expired_lease_nobody_took_is_taken_back(redis_server):
    client = redis_server.client()
    lease = RunLease(client, "r3", "A", 1)
    assert lease.acquire()
    time.sleep(1.2)
    assert lease.still_valid()
    assert lease.holder() == lease.value


def test_heartbeat_keeps_the_lease_through_a_redis_restart(redis_server):
    lease = RunLease(redis_server.client(), "r4", "A", 1)
    assert lease.acquire()
    lease.start_heartbeat()
    try:
        redis_server.stop()
        time.sleep(1.5)
        assert lease.still_valid()  # Redis away: not stale
        redis_server.start()  # same port, AOF: the fence survives
        # the heartbeat, reconnected, holds the key again (its ttl may have run out meanwhile)
        wait_until(lambda: lease.holder() == lease.value, FLOOR_SECONDS,
                   "the heartbeat to hold the lease again",
                   lambda: f"holder {lease.holder()!r}, lost {lease.lost.is_set()}", poll=0.05)
        assert lease.still_valid() and not lease.lost.is_set()
        assert lease.holder() == lease.value
    finally:
        lease.release()
    assert lease.holder() is None

"""The cluster state without Redis (rtgate.cluster: LocalStore, the rate window, usage
buffers, leases, member records). Pure: an injected clock, no sockets."""

from __future__ import annotations

import math
import os
import re
import socket

import pytest

from rtgate.cluster import (
    KeyLimits,
    Lease,
    LocalStore,
    Member,
    Refused,
    new_member,
    open_store,
    rate_window,
)
from rtgate.cluster.redis_store import member_from_record, member_record
from rtgate.cluster.usage import UsageBuffer

KEY = "k_3f9a"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(now: float = 1_000_045.0) -> tuple[LocalStore, Clock]:
    clock = Clock(now)
    return LocalStore(new_member("http://127.0.0.1:41234"), clock=clock), clock


def test_new_member_is_this_process_with_a_fresh_tag() -> None:
    """An 8-hex-digit id, random per call; hostname, pid and start time of this process."""
    a, b = new_member("http://10.0.0.5:1"), new_member("http://10.0.0.5:1", clock=lambda: 12.5)
    assert re.fullmatch(r"[0-9a-f]{8}", a.id) and a.id != b.id
    assert (a.host, a.pid, a.sessions, a.draining) == (socket.gethostname(), os.getpid(), 0, False)
    assert b.started_at == 12.5


def test_rate_window_is_a_fixed_minute_aligned_on_the_clock() -> None:
    """The window index is floor(now / 60); the time left runs to the next multiple of 60."""
    assert rate_window(120.0) == (2, 60.0)
    assert rate_window(179.75) == (2, pytest.approx(0.25))
    assert rate_window(-1.0) == (-1, 1.0)


async def test_local_store_is_the_whole_cluster() -> None:
    """members() is [me], reachable and ping are always true, report updates me."""
    s, _ = store()
    await s.start()
    assert s.reachable and await s.ping()
    s.report(sessions=4, draining=True)
    assert await s.members() == [s.me]
    assert (s.me.sessions, s.me.draining) == (4, True)
    assert await s.member(s.me.id) == s.me
    assert await s.member("00000000") is None
    await s.aclose()


async def test_concurrent_limit_counts_live_leases_per_key() -> None:
    """max_sessions refuses the extra session of a key, other keys are untouched, and a
    release (once, however often called) frees the slot."""
    s, _ = store()
    limits = KeyLimits(max_sessions=2)
    first, second = await s.acquire(KEY, limits), await s.acquire(KEY, limits)
    assert isinstance(first, Lease) and isinstance(second, Lease)
    assert await s.acquire(KEY, limits) == Refused("concurrent", 2, 1.0)
    assert isinstance(await s.acquire("k_other", limits), Lease)
    await first.release()
    await first.release()
    assert first.released and s.live_leases(KEY) == 1
    third = await s.acquire(KEY, limits)
    assert isinstance(third, Lease)
    assert await s.acquire(KEY, limits) == Refused("concurrent", 2, 1.0)


async def test_unlimited_admits_everything() -> None:
    """Zero limits mean unlimited."""
    s, _ = store()
    for _ in range(50):
        assert isinstance(await s.acquire(KEY, KeyLimits()), Lease)


async def test_rate_limit_refuses_until_the_window_ends() -> None:
    """sessions_per_minute counts admissions in the current window; retry_after_s is what
    is left of it; releases give nothing back; the next window starts from zero."""
    s, clock = store(1_000_045.0)  # window [1_000_020, 1_000_080)
    limits = KeyLimits(sessions_per_minute=2)
    for _ in range(2):
        lease = await s.acquire(KEY, limits)
        assert isinstance(lease, Lease)
        await lease.release()
    clock.now += 10.0
    assert await s.acquire(KEY, limits) == Refused("rate", 2, pytest.approx(25.0))
    assert isinstance(await s.acquire("k_other", limits), Lease)
    clock.now += 25.0
    assert isinstance(await s.acquire(KEY, limits), Lease)


async def test_concurrent_refusal_uses_no_rate_slot() -> None:
    """The concurrent limit is checked first; its refusals do not count as admissions."""
    s, _ = store()
    limits = KeyLimits(max_sessions=1, sessions_per_minute=2)
    lease = await s.acquire(KEY, limits)
    assert isinstance(lease, Lease)
    for _ in range(5):
        assert await s.acquire(KEY, limits) == Refused("concurrent", 1, 1.0)
    await lease.release()
    assert isinstance(await s.acquire(KEY, limits), Lease)


async def test_rate_counts_are_dropped_when_the_window_ends() -> None:
    """Memory for the rate limit is the keys admitted in the current window only."""
    s, clock = store(1_000_045.0)
    for i in range(100):
        await s.acquire(f"k_{i}", KeyLimits(sessions_per_minute=1))
    clock.now += 60.0
    await s.acquire(KEY, KeyLimits(sessions_per_minute=1))
    assert s._admitted == {KEY: 1}


async def test_usage_accumulates_per_key() -> None:
    """add_usage adds the five counters per key id; usage() returns a copy."""
    s, _ = store()
    s.add_usage(KEY, sessions=1, audio_in_s=1.5, input_tokens=3)
    s.add_usage(KEY, audio_out_s=2.0, output_tokens=4, sessions=1)
    s.add_usage("k_other")  # nothing to count: no entry
    usage = await s.usage()
    assert usage == {KEY: {"sessions": 2.0, "audio_in_s": 1.5, "audio_out_s": 2.0,
                           "input_tokens": 3.0, "output_tokens": 4.0}}
    usage[KEY]["sessions"] = 99
    assert (await s.usage())[KEY]["sessions"] == 2.0


def test_usage_buffer_drops_non_finite_values() -> None:
    """A NaN or infinity is not counted (it would poison the total)."""
    buffer = UsageBuffer()
    buffer.add(KEY, audio_in_s=math.nan, audio_out_s=math.inf, sessions=1)
    assert buffer.take() == {KEY: {"sessions": 1.0, "audio_in_s": 0.0, "audio_out_s": 0.0,
                                   "input_tokens": 0.0, "output_tokens": 0.0}}
    assert not buffer


async def test_lease_release_never_raises() -> None:
    """A release whose un-counting fails is swallowed (logged): the caller's session is over."""

    async def broken(_lease: Lease) -> None:
        raise ConnectionError("gone")

    lease = Lease(KEY, "abc", enforced=True, release=broken)
    async with lease:
        pass
    assert lease.released


def test_member_record_round_trips() -> None:
    """The Redis hash of a member reads back as the same member; a bad record reads as None."""
    m = Member("0a1b2c3d", "http://10.0.0.5:41234", "node-1", 4242, 3, True, 1_700_000_000.125)
    assert member_from_record(member_record(m)) == m
    assert member_from_record({"id": "0a1b2c3d"}) is None
    assert member_from_record(member_record(m) | {"pid": "x"}) is None


def test_open_store_picks_the_implementation() -> None:
    """No Redis URL: a LocalStore. A URL: a RedisStore, not connected yet. Bad timings are
    configuration errors."""
    me = new_member("http://127.0.0.1:1")
    assert isinstance(open_store(None, me), LocalStore)
    assert isinstance(open_store("", me), LocalStore)
    remote = open_store("redis://127.0.0.1:1/0", me, prefix="x")
    assert type(remote).__name__ == "RedisStore" and not remote.reachable
    with pytest.raises(ValueError, match="heartbeat_s"):
        open_store("redis://127.0.0.1:1/0", me, heartbeat_s=0)

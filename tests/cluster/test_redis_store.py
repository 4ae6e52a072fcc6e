"""RedisStore (rtgate.cluster.redis_store) against a real redis-server on 127.0.0.1:
members see each other and a silent one drops out within 3 heartbeats, the per-key limits
hold across processes, usage adds up and survives a Redis restart, and a hung or stopped
Redis makes everything fail open until it answers again."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from rtgate.cluster import KeyLimits, Lease, Member, Refused, new_member, open_store
from rtgate.cluster.redis_store import RedisStore
from rtgate.cluster.scripts import FLUSH_USAGE, Keys, flush_usage_args

from .conftest import RedisServer

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 0.2
TTL_S = 3 * HEARTBEAT_S
OP_TIMEOUT_S = 0.3
SLACK_S = 0.4
"""Scheduling headroom on a loaded machine, on top of each bound the contract states."""
KEY = "k_3f9a"  # a key id: a hash, never an API key


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Cluster:
    """Started stores on one Redis under a prefix of their own; all closed at teardown."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.prefix = f"t{secrets.token_hex(3)}"
        self.stores: list[RedisStore] = []

    async def join(self, clock: Callable[[], float] = time.time) -> RedisStore:
        store = open_store(self.server.url, new_member(f"http://127.0.0.1:{40000 + len(self.stores)}"),
                           prefix=self.prefix, heartbeat_s=HEARTBEAT_S, op_timeout_s=OP_TIMEOUT_S, clock=clock)
        assert isinstance(store, RedisStore)
        self.stores.append(store)
        await store.start()
        return store

    def client(self) -> Redis:
        return Redis.from_url(self.server.url, decode_responses=True)

    async def close(self) -> None:
        for store in self.stores:
            await store.aclose()


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Cluster]:
    c = Cluster(redis_server)
    yield c
    await c.close()


async def eventually(condition: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> float:
    """Poll ``condition`` until it holds; the seconds that took. Fails after ``within_s``."""
    start = time.monotonic()
    while not await condition():
        assert time.monotonic() - start < within_s, "condition never held"
        await asyncio.sleep(0.02)  # a polling period, not an ordering
    return time.monotonic() - start


def ids(members: list[Member]) -> set[str]:
    return {m.id for m in members}


# -- members ----------------------------------------------------------------------------


async def test_two_members_see_each_other(cluster: Cluster) -> None:
    """Each started store lists both members, with the other's URL, host and pid."""
    a, b = await cluster.join(), await cluster.join()
    assert a.reachable and b.reachable
    assert ids(await a.members()) == ids(await b.members()) == {a.me.id, b.me.id}
    assert await b.member(a.me.id) == a.me
    assert await b.member("00000000") is None


async def test_report_is_published_at_the_next_heartbeat(cluster: Cluster) -> None:
    """``report`` changes what other members see once a heartbeat has run."""
    a, b = await cluster.join(), await cluster.join()
    a.report(sessions=3, draining=True)

    async def seen() -> bool:
        m = await b.member(a.me.id)
        return m is not None and m.sessions == 3 and m.draining

    await eventually(seen, within_s=HEARTBEAT_S + SLACK_S)


async def test_member_that_stops_heartbeating_disappears_within_three_beats(cluster: Cluster) -> None:
    """A member killed without deregistering drops out of ``members()`` within 3 × heartbeat."""
    a, b = await cluster.join(), await cluster.join()
    await a.abandon()

    async def gone() -> bool:
        return a.me.id not in ids(await b.members())

    assert await eventually(gone) <= TTL_S + SLACK_S
    assert await b.member(a.me.id) is None


async def test_closed_member_leaves_at_once(cluster: Cluster) -> None:
    """``aclose`` deregisters: the others stop listing the member without waiting for its TTL."""
    a, b = await cluster.join(), await cluster.join()
    await a.aclose()
    assert ids(await b.members()) == {b.me.id}


# -- concurrent sessions ----------------------------------------------------------------


async def test_concurrent_limit_holds_across_members(cluster: Cluster) -> None:
    """``max_sessions`` counts the key's sessions on every member; a release frees a slot."""
    a, b = await cluster.join(), await cluster.join()
    limits = KeyLimits(max_sessions=2)
    first = await a.acquire(KEY, limits)
    second = await b.acquire(KEY, limits)
    assert isinstance(first, Lease) and isinstance(second, Lease) and first.enforced
    refused = await a.acquire(KEY, limits)
    assert refused == Refused("concurrent", 2, 1.0)
    assert isinstance(await a.acquire("k_other", limits), Lease), "limits are per key"

    await first.release()
    await first.release()  # idempotent
    assert isinstance(await b.acquire(KEY, limits), Lease)
    assert isinstance(await a.acquire(KEY, limits), Refused)


async def test_heartbeat_keeps_leases_alive(cluster: Cluster) -> None:
    """The holder's heartbeat pushes its leases' expiry ahead, so they outlive the first TTL."""
    a, b = await cluster.join(), await cluster.join()
    lease = await a.acquire(KEY, KeyLimits(max_sessions=1))
    assert isinstance(lease, Lease)
    redis = cluster.client()
    leases_key = Keys(cluster.prefix).leases(KEY)
    entry = f"{a.me.id}:{lease.lease_id}"
    first_expiry = await redis.zscore(leases_key, entry)
    assert first_expiry is not None

    async def refreshed_past_first_expiry() -> bool:
        score = await redis.zscore(leases_key, entry)
        return score is not None and score > first_expiry + TTL_S

    await eventually(refreshed_past_first_expiry)
    assert time.time() > first_expiry
    assert isinstance(await b.acquire(KEY, KeyLimits(max_sessions=1)), Refused)
    await redis.aclose()


async def test_killed_members_leases_stop_counting(cluster: Cluster) -> None:
    """The sessions of a member that stops heartbeating stop counting within 3 × heartbeat."""
    a, b = await cluster.join(), await cluster.join()
    limits = KeyLimits(max_sessions=1)
    assert isinstance(await a.acquire(KEY, limits), Lease)
    assert isinstance(await b.acquire(KEY, limits), Refused)
    await a.abandon()

    async def admitted() -> bool:
        return isinstance(await b.acquire(KEY, limits), Lease)

    assert await eventually(admitted) <= TTL_S + SLACK_S


# -- sessions per minute ----------------------------------------------------------------


async def test_rate_limit_holds_across_members_with_truthful_retry_after(cluster: Cluster) -> None:
    """``sessions_per_minute`` counts admissions on every member in a fixed minute window;
    ``retry_after_s`` is the time left in the window; releasing does not give slots back."""
    clock = Clock(1_000_045.0)  # 35 s before the window [1_000_020, 1_000_080) ends
    a, b = await cluster.join(clock), await cluster.join(clock)
    limits = KeyLimits(sessions_per_minute=3)
    leases = [await a.acquire(KEY, limits), await b.acquire(KEY, limits), await a.acquire(KEY, limits)]
    assert all(isinstance(lease, Lease) for lease in leases)
    for lease in leases:
        assert isinstance(lease, Lease)
        await lease.release()
    clock.now += 5.0
    refused = await b.acquire(KEY, limits)
    assert isinstance(refused, Refused) and (refused.reason, refused.limit) == ("rate", 3)
    assert refused.retry_after_s == pytest.approx(30.0)

    clock.now += refused.retry_after_s
    assert isinstance(await b.acquire(KEY, limits), Lease)


async def test_concurrent_refusal_uses_no_rate_slot(cluster: Cluster) -> None:
    """An attempt refused for ``concurrent`` is not counted against ``sessions_per_minute``."""
    clock = Clock(1_000_045.0)
    a, b = await cluster.join(clock), await cluster.join(clock)
    limits = KeyLimits(max_sessions=1, sessions_per_minute=2)
    lease = await a.acquire(KEY, limits)
    assert isinstance(lease, Lease)
    for _ in range(3):
        assert (await b.acquire(KEY, limits)) == Refused("concurrent", 1, 1.0)
    await lease.release()
    assert isinstance(await b.acquire(KEY, limits), Lease)


# -- usage ------------------------------------------------------------------------------


def expected(**fields: float) -> dict[str, float]:
    base = dict.fromkeys(("sessions", "audio_in_s", "audio_out_s", "input_tokens", "output_tokens"), 0.0)
    return base | fields


async def test_usage_is_summed_across_members(cluster: Cluster) -> None:
    """Each member's usage is published by its heartbeat; ``usage()`` is the cluster's total,
    this member's unpublished usage included from the start."""
    a, b = await cluster.join(), await cluster.join()
    a.add_usage(KEY, sessions=1, audio_in_s=1.5, output_tokens=7)
    b.add_usage(KEY, sessions=2, input_tokens=10, audio_out_s=0.25)
    b.add_usage("k_other", sessions=1)
    assert (await a.usage())[KEY]["audio_in_s"] >= 1.5
    want = {KEY: expected(sessions=3, audio_in_s=1.5, audio_out_s=0.25, input_tokens=10, output_tokens=7),
            "k_other": expected(sessions=1)}

    async def summed() -> bool:
        return await a.usage() == want and await b.usage() == want

    await eventually(summed)


async def test_usage_survives_a_redis_restart(cluster: Cluster) -> None:
    """Usage added while Redis is down stays buffered and is published once it is back;
    nothing is lost and nothing counts twice."""
    a, b = await cluster.join(), await cluster.join()
    a.add_usage(KEY, sessions=1, audio_in_s=2.0)

    async def published() -> bool:
        return (await b.usage()).get(KEY) == expected(sessions=1, audio_in_s=2.0)

    await eventually(published)
    cluster.server.stop(save=True)  # a Redis with persistence: what it holds comes back

    async def down() -> bool:
        return not a.reachable

    await eventually(down)
    a.add_usage(KEY, sessions=1, audio_out_s=3.0)
    assert (await a.usage())[KEY]["audio_out_s"] == 3.0, "buffered usage is visible locally"
    cluster.server.start()

    want = {KEY: expected(sessions=2, audio_in_s=2.0, audio_out_s=3.0)}

    async def all_published() -> bool:
        return b.reachable and a.reachable and await b.usage() == want

    await eventually(all_published)
    assert await a.usage() == want


async def test_a_usage_batch_is_applied_once(cluster: Cluster) -> None:
    """A batch sent again after a lost reply (same batch number) is not counted twice."""
    redis = cluster.client()
    keys = Keys(cluster.prefix)
    script = redis.register_script(FLUSH_USAGE)
    batch_keys, args = flush_usage_args(keys, "m0000001", 1, {KEY: expected(sessions=1, audio_in_s=0.5)})
    assert await script(keys=batch_keys, args=args) == 1
    assert await script(keys=batch_keys, args=args) == 0
    assert await redis.hgetall(keys.usage(KEY)) == {"sessions": "1", "audio_in_s": "0.5"}
    await redis.aclose()


# -- fail open --------------------------------------------------------------------------


async def test_hung_redis_fails_open_within_the_operation_timeout(cluster: Cluster) -> None:
    """With Redis frozen, ``acquire`` admits after at most ``op_timeout_s`` (then at once),
    ``reachable`` is False, ``members()`` is just this member; when Redis answers again
    the store is reachable and enforcing again."""
    a = await cluster.join()
    limits = KeyLimits(max_sessions=1)
    cluster.server.freeze()

    start = time.monotonic()
    lease = await a.acquire(KEY, limits)
    assert time.monotonic() - start <= OP_TIMEOUT_S + SLACK_S
    assert isinstance(lease, Lease) and not lease.enforced
    assert not a.reachable

    start = time.monotonic()
    again = await a.acquire(KEY, limits)
    assert isinstance(again, Lease) and not again.enforced
    assert time.monotonic() - start < 0.05, "a known outage costs no timeout"
    assert await a.members() == [a.me]
    start = time.monotonic()
    assert await a.ping() is False
    assert time.monotonic() - start <= OP_TIMEOUT_S + SLACK_S

    cluster.server.thaw()

    async def back() -> bool:
        return a.reachable

    await eventually(back)
    assert await a.ping() is True
    await again.release()
    refused = await a.acquire(KEY, limits)
    assert isinstance(refused, Refused), "the lease admitted during the outage counts again"


async def test_counts_are_reestablished_after_an_empty_redis_restart(cluster: Cluster) -> None:
    """Redis restarted without its data: each member re-registers and re-adds its live
    leases, those admitted during the outage included, so the limits hold again."""
    a, b = await cluster.join(), await cluster.join()
    limits = KeyLimits(max_sessions=2)
    held = await a.acquire(KEY, limits)
    assert isinstance(held, Lease) and held.enforced
    cluster.server.stop()  # no persistence: everything in Redis is gone

    start = time.monotonic()
    during = await a.acquire(KEY, limits)
    assert time.monotonic() - start <= OP_TIMEOUT_S + SLACK_S
    assert isinstance(during, Lease) and not during.enforced
    assert not a.reachable
    cluster.server.start()

    async def both_back() -> bool:
        return a.reachable and b.reachable

    await eventually(both_back)
    assert ids(await b.members()) == {a.me.id, b.me.id}
    assert await b.acquire(KEY, limits) == Refused("concurrent", 2, 1.0)
    await during.release()
    assert isinstance(await b.acquire(KEY, limits), Lease)


async def test_one_warning_per_outage(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """An outage logs one warning when it starts and one when it ends, however many calls
    fail open in between, and no key id appears in the log."""
    a = await cluster.join()
    caplog.set_level("INFO", logger="rtgate.cluster")
    cluster.server.freeze()
    for _ in range(3):
        assert isinstance(await a.acquire(KEY, KeyLimits(max_sessions=1)), Lease)
    await a.members()
    await a.ping()
    cluster.server.thaw()

    async def back() -> bool:
        return a.reachable

    await eventually(back)
    messages = [r.getMessage() for r in caplog.records if r.name == "rtgate.cluster"]
    assert [m for m in messages if "unreachable" in m] == [messages[0]]
    assert len([m for m in messages if "reachable again" in m]) == 1
    assert not any(KEY in m for m in messages)


async def test_start_does_not_wait_for_a_redis_that_is_down(cluster: Cluster) -> None:
    """A store started while Redis is down starts at once, unreachable, and joins the
    cluster by itself when Redis comes up."""
    cluster.server.stop()
    start = time.monotonic()
    a = await cluster.join()
    assert time.monotonic() - start <= OP_TIMEOUT_S + SLACK_S
    assert not a.reachable and await a.members() == [a.me]
    cluster.server.start()
    b = await cluster.join()

    async def joined() -> bool:
        return a.reachable and a.me.id in ids(await b.members())

    await eventually(joined)

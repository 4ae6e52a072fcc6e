"""RedisStore: the cluster state in a Redis shared by every rtgate process.

The key layout and the atomic scripts are in :mod:`rtgate.cluster.scripts`. This module
states how a process keeps them true.

**Heartbeat.** Every ``heartbeat_s`` one pipelined round trip (re)writes this member's
record with a TTL of ``3 * heartbeat_s``, adds it to the member index, pushes the expiry
of every live lease of this process ``3 * heartbeat_s`` ahead (re-adding any that Redis
lost), and publishes the usage buffered since the last one. A process that stops
heartbeating (SIGKILL, a frozen host) drops out of :meth:`RedisStore.members` and its
sessions stop counting against their keys within ``3 * heartbeat_s``.

**Usage.** :meth:`RedisStore.add_usage` adds to a local buffer. The heartbeat hands the
buffer over as a numbered batch, applied at most once by
:data:`~rtgate.cluster.scripts.FLUSH_USAGE`; a batch whose flush fails is kept and sent
again, unchanged, until one succeeds, while newer usage waits in the buffer. Nothing is
lost while Redis is down, and a reply lost in transit does not count twice.

**Fail open.** Every Redis operation runs under ``op_timeout_s``. Any failure (refused
connection, timeout, an error reply such as ``LOADING`` or ``READONLY``) makes the store
*unreachable*: :attr:`RedisStore.reachable` turns False and one warning is logged for
the outage, not one per call. While unreachable:

* :meth:`~RedisStore.acquire` admits at once without asking Redis: the lease is
  *unenforced* (:attr:`Lease.enforced` False) but still held locally;
* :meth:`~RedisStore.members` is ``[me]``; :meth:`~RedisStore.member` knows only ``me``;
* :meth:`~RedisStore.usage` is this process's unpublished usage only;
* releases are local only: the lease's entry in Redis, no longer refreshed, expires.

Only a heartbeat that succeeds makes the store reachable again (a successful
:meth:`~RedisStore.ping` does not), because that heartbeat has re-registered this member
and re-added all its live leases, unenforced ones included, so the counts are right
again from then on. None of these methods raises because Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import scripts
from .scripts import Keys
from .store import (
    CONCURRENT_RETRY_HINT_S,
    Clock,
    KeyLimits,
    Lease,
    Member,
    Refused,
    new_lease_id,
    rate_window,
)
from .usage import BufferedUsage, Usage, UsageBuffer, copy, merge

log = logging.getLogger("rtgate.cluster")

T = TypeVar("T")

MEMBER_TTL_BEATS = 3
"""A member's record and its leases outlive its last heartbeat by this many heartbeats."""


class _Unreachable(Exception):
    """A Redis operation failed; the store is already marked unreachable."""


def member_record(member: Member) -> dict[str, str]:
    return {
        "id": member.id,
        "url": member.url,
        "host": member.host,
        "pid": str(member.pid),
        "sessions": str(member.sessions),
        "draining": "1" if member.draining else "0",
        "started_at": repr(member.started_at),
    }


def member_from_record(record: dict[str, str]) -> Member | None:
    """The member a record describes, or None for a record this version cannot read."""
    try:
        return Member(
            id=record["id"],
            url=record["url"],
            host=record["host"],
            pid=int(record["pid"]),
            sessions=int(record["sessions"]),
            draining=record["draining"] == "1",
            started_at=float(record["started_at"]),
        )
    except (KeyError, ValueError):
        return None


class RedisStore(BufferedUsage):
    """A :class:`~rtgate.cluster.store.ClusterStore` backed by Redis; see the module docstring."""

    def __init__(
        self,
        url: str,
        me: Member,
        *,
        prefix: str = "rtgate",
        heartbeat_s: float = 2.0,
        op_timeout_s: float = 0.5,
        clock: Clock = time.time,
    ) -> None:
        self.me = me
        self.reachable = False  # until the first heartbeat succeeds
        self._heartbeat_s = heartbeat_s
        self._ttl_s = MEMBER_TTL_BEATS * heartbeat_s
        self._op_timeout_s = op_timeout_s
        self._clock = clock
        self._keys = Keys(prefix)
        # No client-side retries: op_timeout_s bounds each operation, and the heartbeat
        # is the retry.
        self._redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=op_timeout_s,
            socket_connect_timeout=op_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._acquire_script = self._redis.register_script(scripts.ACQUIRE)
        self._members_script = self._redis.register_script(scripts.MEMBERS)
        self._flush_script = self._redis.register_script(scripts.FLUSH_USAGE)
        self._leases: dict[str, str] = {}  # "<member id>:<lease id>" -> key id, live here
        self._buffer = UsageBuffer()
        self._batch = 0  # number of the last batch taken from the buffer
        self._sent: tuple[int, Usage] | None = None  # taken, not yet acknowledged
        self._down_since: float | None = None
        self._joined = False
        self._closed = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None or self._closed:
            return
        await self._beat()
        self._task = asyncio.create_task(self._heartbeat_loop(), name=f"rtgate-cluster-{self.me.id}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_heartbeat()
        leases, self._leases = self._leases, {}
        batches = self._take_batches(final=True)

        async def farewell() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for batch, usage in batches:
                    await self._queue_flush(pipe, batch, usage)
                pipe.delete(self._keys.member(self.me.id), self._keys.flushed(self.me.id))
                pipe.srem(self._keys.members, self.me.id)
                for entry, key_id in leases.items():
                    pipe.zrem(self._keys.leases(key_id), entry)
                await pipe.execute()

        try:
            await self._op("deregister", farewell)
        except _Unreachable:
            if batches:
                unpublished = {key_id for _, usage in batches for key_id in usage}
                log.warning("cluster: usage of %d key(s) was not published before shutdown", len(unpublished))
        self.reachable = False  # closed: every method answers locally from now on
        await self._close_client()

    async def abandon(self) -> None:
        """Stop as a killed process would: no deregistration, no release, no flush.

        The member record and the leases stay in Redis until they expire; for tests and
        failure drills.
        """
        self._closed = True
        self.reachable = False
        await self._stop_heartbeat()
        await self._close_client()

    # -- members -----------------------------------------------------------------------

    def report(self, *, sessions: int, draining: bool) -> None:
        self.me = dataclasses.replace(self.me, sessions=sessions, draining=draining)

    async def members(self) -> list[Member]:
        if not self.reachable:
            return [self.me]
        try:
            rows = await self._op(
                "members",
                lambda: self._members_script(keys=[self._keys.members], args=[self._keys.member_prefix]),
            )
        except _Unreachable:
            return [self.me]
        found = {self.me.id: self.me}  # this process's own view is the freshest
        for row in rows:
            member = member_from_record(dict(zip(row[::2], row[1::2], strict=True)))
            if member is not None and member.id not in found:
                found[member.id] = member
        return sorted(found.values(), key=lambda m: (m.started_at, m.id))

    async def member(self, member_id: str) -> Member | None:
        if member_id == self.me.id:
            return self.me
        if not self.reachable:
            return None
        try:
            record = await self._op("member", lambda: self._redis.hgetall(self._keys.member(member_id)))
        except _Unreachable:
            return None
        return member_from_record({str(k): str(v) for k, v in record.items()}) if record else None

    # -- leases ------------------------------------------------------------------------

    async def acquire(self, key_id: str, limits: KeyLimits) -> Lease | Refused:
        lease_id = new_lease_id()
        entry = f"{self.me.id}:{lease_id}"
        if not self.reachable:
            return self._hold(entry, key_id, lease_id, enforced=False)
        now = self._clock()
        window, window_left_s = rate_window(now)
        try:
            verdict = await self._op(
                "acquire",
                lambda: self._acquire_script(
                    keys=[self._keys.leases(key_id), self._keys.rate(key_id, window)],
                    args=[
                        repr(now),
                        repr(now + self._ttl_s),
                        entry,
                        limits.max_sessions,
                        limits.sessions_per_minute,
                        int(self._ttl_s * 1000),
                        2 * 60,
                    ],
                ),
            )
        except _Unreachable:
            # The script may still have run; holding the lease locally keeps the entry
            # refreshed and lets release remove it, so either way the count stays right.
            return self._hold(entry, key_id, lease_id, enforced=False)
        if verdict == "concurrent":
            return Refused("concurrent", limits.max_sessions, CONCURRENT_RETRY_HINT_S)
        if verdict == "rate":
            return Refused("rate", limits.sessions_per_minute, window_left_s)
        return self._hold(entry, key_id, lease_id, enforced=True)

    def _hold(self, entry: str, key_id: str, lease_id: str, *, enforced: bool) -> Lease:
        self._leases[entry] = key_id
        return Lease(key_id, lease_id, enforced=enforced, release=self._release)

    async def _release(self, lease: Lease) -> None:
        entry = f"{self.me.id}:{lease.lease_id}"
        key_id = self._leases.pop(entry, None)
        if key_id is None or not self.reachable:
            return  # closed already, or unreachable: the entry is no longer refreshed
        with contextlib.suppress(_Unreachable):
            await self._op("release", lambda: self._redis.zrem(self._keys.leases(key_id), entry))

    # -- usage -------------------------------------------------------------------------

    async def usage(self) -> Usage:
        # Snapshot the local part before reading Redis: a heartbeat may publish it while
        # the read is in flight. The flush marker read with the totals tells which local
        # batches the totals already include (the buffer becomes batch self._batch + 1).
        sent = self._sent
        buffered, buffer_batch = self._buffer.peek(), self._batch + 1
        local = merge(copy(sent[1]) if sent else {}, buffered)
        if not self.reachable:
            return local
        try:
            totals, applied = await self._op("usage", self._read_usage)
        except _Unreachable:
            return local
        if sent is not None and sent[0] > applied:
            merge(totals, sent[1])
        if buffer_batch > applied:
            merge(totals, buffered)
        return totals

    async def _read_usage(self) -> tuple[Usage, int]:
        key_ids = sorted(str(key_id) for key_id in await self._redis.smembers(self._keys.usage_keys))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.flushed(self.me.id))
            for key_id in key_ids:
                pipe.hgetall(self._keys.usage(key_id))
            marker, *records = await pipe.execute()
        totals: Usage = {}
        for key_id, record in zip(key_ids, records, strict=True):
            if record:
                merge(totals, {key_id: {name: float(value) for name, value in record.items()}})
        return totals, int(marker or 0)

    def _take_batches(self, *, final: bool = False) -> list[tuple[int, Usage]]:
        """The batches to send now: the unacknowledged one as it was, else the buffer as a
        new one. ``final``: both, since there is no later heartbeat."""
        batches = [self._sent] if self._sent is not None else []
        if self._buffer and (final or not batches):
            self._batch += 1
            batches.append((self._batch, self._buffer.take()))
        if not final and batches:
            self._sent = batches[0]
        return batches

    async def _queue_flush(self, pipe: Any, batch: int, usage: Usage) -> None:
        keys, args = scripts.flush_usage_args(self._keys, self.me.id, batch, usage)
        await self._flush_script(keys=keys, args=args, client=pipe)

    # -- health ------------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            await self._op("ping", self._redis.ping)
        except _Unreachable:
            return False
        return True

    # -- heartbeat ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self._heartbeat_s
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_beat - loop.time()))
                return
            next_beat = max(next_beat + self._heartbeat_s, loop.time())
            try:
                await self._beat()
            except Exception:  # the heartbeat must outlive any one failure, or the member dies
                log.exception("cluster: heartbeat failed")

    async def _beat(self) -> None:
        expiry = self._clock() + self._ttl_s
        ttl_ms = int(self._ttl_s * 1000)
        leases = dict(self._leases)
        batches = self._take_batches()
        me = self.me

        async def beat() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._keys.member(me.id), mapping=member_record(me))  # type: ignore[arg-type]
                pipe.pexpire(self._keys.member(me.id), ttl_ms)
                pipe.sadd(self._keys.members, me.id)
                by_key: dict[str, dict[str, float]] = {}
                for entry, key_id in leases.items():
                    by_key.setdefault(key_id, {})[entry] = expiry
                for key_id, entries in by_key.items():
                    # ZADD, not ZADD XX: a lease Redis lost (restart, late beat) is re-added.
                    pipe.zadd(self._keys.leases(key_id), entries)
                    pipe.pexpire(self._keys.leases(key_id), ttl_ms)
                for batch, usage in batches:
                    await self._queue_flush(pipe, batch, usage)
                await pipe.execute()

        try:
            await self._op("heartbeat", beat)
        except _Unreachable:
            return
        self._sent = None
        self._mark_up()
        # A lease released while the beat was in flight may just have been re-added.
        gone = [(entry, key_id) for entry, key_id in leases.items() if entry not in self._leases]
        if gone:
            with contextlib.suppress(_Unreachable):
                await self._op("release", lambda: self._zrem_all(gone))

    async def _zrem_all(self, entries: list[tuple[str, str]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry, key_id in entries:
                pipe.zrem(self._keys.leases(key_id), entry)
            await pipe.execute()

    async def _stop_heartbeat(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _close_client(self) -> None:
        # redis-py 5.0.0 has close(), later versions aclose().
        close = getattr(self._redis, "aclose", None) or self._redis.close
        with contextlib.suppress(RedisError, OSError):
            await close()

    # -- reachability ------------------------------------------------------------------

    async def _op(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation under the timeout; on failure, mark unreachable and
        raise :class:`_Unreachable`."""
        try:
            async with asyncio.timeout(self._op_timeout_s):
                return await op()
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down(what, exc)
            raise _Unreachable from exc

    def _mark_down(self, what: str, exc: BaseException) -> None:
        self.reachable = False
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "cluster: Redis unreachable (%s: %s); limits fail open and usage is buffered "
                "until it answers", what, type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
            )

    def _mark_up(self) -> None:
        if not self._joined:
            self._joined = True
            log.info("cluster: member %s registered in Redis", self.me.id)
        elif self._down_since is not None:
            log.info(
                "cluster: Redis reachable again after %.1f s; member and leases re-registered",
                time.monotonic() - self._down_since,
            )
        self._down_since = None
        self.reachable = True

"""LocalStore: the cluster is this process alone; state lives in memory.

Same contract as :class:`~rtgate.cluster.store.ClusterStore` with these specifics:

* :meth:`LocalStore.members` is ``[me]``; :attr:`LocalStore.reachable` is always True.
* The limits hold for this process only: leases are counted per key in a dict, and the
  rate window (:func:`~rtgate.cluster.store.rate_window`) reads the injected clock.
  Memory is bounded by the keys with live leases plus the keys admitted in the current
  window (the window's counts are dropped when it ends).
* :meth:`LocalStore.usage` is the total since start; there is nothing to flush.
"""

from __future__ import annotations

import dataclasses
import time

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
from .usage import BufferedUsage, Usage, UsageBuffer


class LocalStore(BufferedUsage):
    """In-memory :class:`~rtgate.cluster.store.ClusterStore` for a single process."""

    def __init__(self, me: Member, *, clock: Clock = time.time) -> None:
        self.me = me
        self.reachable = True
        self._clock = clock
        self._leases: dict[str, set[str]] = {}  # key id -> live lease ids
        self._window = -1
        self._admitted: dict[str, int] = {}  # key id -> sessions admitted in self._window
        self._buffer = UsageBuffer()

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self._leases.clear()

    def report(self, *, sessions: int, draining: bool) -> None:
        self.me = dataclasses.replace(self.me, sessions=sessions, draining=draining)

    async def members(self) -> list[Member]:
        return [self.me]

    async def member(self, member_id: str) -> Member | None:
        return self.me if member_id == self.me.id else None

    async def acquire(self, key_id: str, limits: KeyLimits) -> Lease | Refused:
        live = self._leases.get(key_id, set())
        if limits.max_sessions > 0 and len(live) >= limits.max_sessions:
            return Refused("concurrent", limits.max_sessions, CONCURRENT_RETRY_HINT_S)
        window, left_s = rate_window(self._clock())
        if window != self._window:
            self._window, self._admitted = window, {}
        admitted = self._admitted.get(key_id, 0)
        if limits.sessions_per_minute > 0 and admitted >= limits.sessions_per_minute:
            return Refused("rate", limits.sessions_per_minute, left_s)
        self._admitted[key_id] = admitted + 1
        lease = Lease(key_id, new_lease_id(), enforced=True, release=self._release)
        self._leases.setdefault(key_id, set()).add(lease.lease_id)
        return lease

    async def _release(self, lease: Lease) -> None:
        live = self._leases.get(lease.key_id)
        if live is None:
            return
        live.discard(lease.lease_id)
        if not live:
            del self._leases[lease.key_id]

    async def usage(self) -> Usage:
        return self._buffer.peek()

    async def ping(self) -> bool:
        return True

    def live_leases(self, key_id: str) -> int:
        """Sessions of ``key_id`` counted now."""
        return len(self._leases.get(key_id, ()))

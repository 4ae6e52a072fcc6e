"""The cluster state interface: members, per-key limits, usage.

Every rtgate worker process holds one :class:`ClusterStore`. It answers four questions
for the server: which processes are alive (:meth:`~ClusterStore.members`), may this API
key open one more session (:meth:`~ClusterStore.acquire`), how much has each key used
(:meth:`~ClusterStore.usage`), and is the shared state reachable
(:attr:`~ClusterStore.reachable`, :meth:`~ClusterStore.ping`).

Two implementations keep the same contract:

* :class:`~rtgate.cluster.local.LocalStore` — no Redis; this process is the whole cluster
  and the limits hold for it alone.
* :class:`~rtgate.cluster.redis_store.RedisStore` — a Redis shared by every process; the
  limits hold across the cluster.

Contracts common to both:

* ``key_id`` is a non-secret hash of an API key, never the key. It is not logged at
  info level or above.
* **Concurrent sessions** (:attr:`KeyLimits.max_sessions`): a :class:`Lease` counts from
  the moment :meth:`~ClusterStore.acquire` returns it until :meth:`Lease.release` (or the
  store closes, or — Redis — the holding process stops heartbeating for ``3 * heartbeat_s``).
* **New sessions per minute** (:attr:`KeyLimits.sessions_per_minute`): a *fixed* one-minute
  window aligned on the clock (``floor(now / 60)``); every admitted session counts in the
  window it was admitted in, refused attempts do not count. A burst of up to twice the
  limit can straddle a window boundary; that is the price of one counter per key.
  :attr:`Refused.retry_after_s` is the time left until the window ends, when the count
  starts again from zero.
* The concurrent limit is checked first: an attempt refused for ``concurrent`` uses no
  rate slot.
* Methods never raise because the shared state is unreachable: limits fail open (see
  :mod:`rtgate.cluster.redis_store`).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("rtgate.cluster")

Clock = Callable[[], float]
"""Unix time in seconds; injected so tests advance it instead of sleeping."""

RATE_WINDOW_S = 60.0
"""The length of the fixed window :attr:`KeyLimits.sessions_per_minute` counts in."""

CONCURRENT_RETRY_HINT_S = 1.0
""":attr:`Refused.retry_after_s` for a ``concurrent`` refusal: a hint only, since a slot
frees whenever some session of the key ends."""


@dataclass(frozen=True, slots=True)
class Member:
    """One worker process of one node, as the cluster sees it."""

    id: str
    """Short tag, 8 lowercase hex characters, random per process start."""
    url: str
    """Internal base URL other nodes use to reach this process, e.g. ``http://10.0.0.5:41234``."""
    host: str
    """``socket.gethostname()`` of the node."""
    pid: int
    sessions: int
    """Live sessions on this process, as last reported (:meth:`ClusterStore.report`)."""
    draining: bool
    started_at: float
    """Unix time the process started."""


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The limits of one API key across the cluster; 0 means unlimited."""

    max_sessions: int = 0
    """Concurrent sessions per API key."""
    sessions_per_minute: int = 0
    """New sessions per API key per fixed one-minute window."""


@dataclass(frozen=True, slots=True)
class Refused:
    """Why :meth:`ClusterStore.acquire` did not admit a session."""

    reason: str
    """``"concurrent"`` or ``"rate"``."""
    limit: int
    """The limit that was reached."""
    retry_after_s: float
    """``rate``: seconds until the window frees a slot; ``concurrent``: a hint."""


ReleaseFn = Callable[["Lease"], Awaitable[None]]


class Lease:
    """One admitted session counted under a key.

    :meth:`release` is idempotent and never raises: a failure to un-count is logged and
    left to expiry (the store's lease TTL), since the session itself is over either way.
    ``enforced`` is False for a lease admitted without checking the limits (fail open
    while the shared state was unreachable); such a lease still counts once the state is
    reachable again.
    """

    __slots__ = ("_release", "_released", "enforced", "key_id", "lease_id")

    def __init__(self, key_id: str, lease_id: str, *, enforced: bool, release: ReleaseFn) -> None:
        self.key_id = key_id
        self.lease_id = lease_id
        self.enforced = enforced
        self._release = release
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            await self._release(self)
        except Exception:  # fail open: the lease expires on its own
            log.warning("cluster: releasing a lease failed; it will expire", exc_info=True)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Lease {self.lease_id} {state}{'' if self.enforced else ' unenforced'}>"


class ClusterStore(Protocol):
    """A worker process's view of the cluster; see the module docstring for the contracts."""

    me: Member
    reachable: bool
    """False while the shared state is unreachable (always True for a local store)."""

    async def start(self) -> None:
        """Connect, register :attr:`me`, start the heartbeat. Does not raise if unreachable."""

    async def aclose(self) -> None:
        """Stop the heartbeat, flush usage, deregister :attr:`me`, release its leases, close."""

    def report(self, *, sessions: int, draining: bool) -> None:
        """Update :attr:`me`; other members see it after the next heartbeat."""

    async def members(self) -> list[Member]:
        """Live members, this one included (just ``[me]`` while unreachable)."""

    async def member(self, member_id: str) -> Member | None:
        """The live member with this id, or None."""

    async def acquire(self, key_id: str, limits: KeyLimits) -> Lease | Refused:
        """Admit one session of ``key_id`` under ``limits``, or say why not."""

    def add_usage(
        self,
        key_id: str,
        *,
        sessions: int = 0,
        audio_in_s: float = 0.0,
        audio_out_s: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """Count usage of ``key_id``; buffered locally, published at the next heartbeat."""

    async def usage(self) -> dict[str, dict[str, float]]:
        """Usage per key id across the cluster, this process's unpublished usage included."""

    async def ping(self) -> bool:
        """Whether the shared state answers now (within the operation timeout)."""


def new_member(url: str, *, clock: Clock = time.time) -> Member:
    """This process as a new member: a fresh random id, the hostname, the pid, now."""
    return Member(
        id=secrets.token_hex(4),
        url=url,
        host=socket.gethostname(),
        pid=os.getpid(),
        sessions=0,
        draining=False,
        started_at=clock(),
    )


def new_lease_id() -> str:
    return secrets.token_hex(6)


def rate_window(now: float, window_s: float = RATE_WINDOW_S) -> tuple[int, float]:
    """The fixed window ``now`` falls in: its index and the seconds left until it ends."""
    index = math.floor(now / window_s)
    return index, (index + 1) * window_s - now

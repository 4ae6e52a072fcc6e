"""Choosing a process's cluster store from the configuration.

Apart from :mod:`.store` (the contract both implementations keep), so that the contract
module imports neither implementation: each of them imports it.
"""

from __future__ import annotations

import time

from .local import LocalStore
from .store import Clock, ClusterStore, Member


def open_store(
    redis_url: str | None,
    me: Member,
    *,
    prefix: str = "rtgate",
    heartbeat_s: float = 2.0,
    op_timeout_s: float = 0.5,
    clock: Clock = time.time,
) -> ClusterStore:
    """A :class:`~rtgate.cluster.local.LocalStore` when ``redis_url`` is empty, else a
    :class:`~rtgate.cluster.redis_store.RedisStore` (the client connects in ``start``).

    Raises ``ValueError`` for a malformed ``redis_url`` or non-positive timings: those are
    configuration errors, not outages.
    """
    if not redis_url:
        return LocalStore(me, clock=clock)
    if heartbeat_s <= 0 or op_timeout_s <= 0:
        raise ValueError(
            f"heartbeat_s and op_timeout_s must be positive seconds (got {heartbeat_s}, {op_timeout_s})"
        )
    # Imported here so a process without Redis never loads the client.
    from .redis_store import RedisStore

    return RedisStore(
        redis_url, me, prefix=prefix, heartbeat_s=heartbeat_s, op_timeout_s=op_timeout_s, clock=clock
    )

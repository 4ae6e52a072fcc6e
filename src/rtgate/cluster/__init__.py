"""Cluster state shared by rtgate worker processes (issue 12: scale out with Redis).

:func:`open_store` gives each process a :class:`ClusterStore`: a
:class:`~rtgate.cluster.local.LocalStore` when no Redis is configured (this process is the
whole cluster), else a :class:`~rtgate.cluster.redis_store.RedisStore`. The contracts are
in :mod:`rtgate.cluster.store`; the Redis key layout in :mod:`rtgate.cluster.scripts`;
the fail-open policy in :mod:`rtgate.cluster.redis_store`.

Importing this package does not import the Redis client; :func:`open_store` does, when a
Redis URL is given.
"""

from .factory import open_store
from .local import LocalStore
from .store import (
    CONCURRENT_RETRY_HINT_S,
    RATE_WINDOW_S,
    ClusterStore,
    KeyLimits,
    Lease,
    Member,
    Refused,
    new_member,
    rate_window,
)
from .usage import USAGE_FIELDS

__all__ = [
    "CONCURRENT_RETRY_HINT_S",
    "RATE_WINDOW_S",
    "USAGE_FIELDS",
    "ClusterStore",
    "KeyLimits",
    "Lease",
    "LocalStore",
    "Member",
    "Refused",
    "new_member",
    "open_store",
    "rate_window",
]

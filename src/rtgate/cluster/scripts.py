"""The Redis key layout and the Lua scripts that change it atomically.

Every key starts with the deployment's ``prefix`` (``P`` below), so deployments can share
one Redis. ``K`` is a key id (a hash, never an API key), ``M`` a member id.

======================  ======  ===============================================================
key                     type    contents, lifetime
======================  ======  ===============================================================
``P:member:M``          hash    the :class:`~rtgate.cluster.store.Member` record; TTL
                                ``3 * heartbeat_s``, refreshed each heartbeat. It existing
                                *is* the member being alive.
``P:members``           set     index of member ids; an id whose hash has expired is removed
                                by the next :data:`MEMBERS` read (atomically, in the script).
``P:leases:K``          zset    ``M:<lease id>`` scored by the lease's expiry (unix seconds):
                                the live sessions of key K. The holder's heartbeat pushes the
                                expiry ``3 * heartbeat_s`` ahead; :data:`ACQUIRE` drops entries
                                whose expiry has passed before counting. TTL as the entries.
``P:rate:K:W``          string  sessions of K admitted in fixed one-minute window ``W``
                                (``floor(unix_time / 60)``); TTL two windows.
``P:usage:K``           hash    usage totals of K (``HINCRBYFLOAT`` per field); no TTL.
``P:usage_keys``        set     index of the key ids that have a usage hash; no TTL.
``P:flushed:M``         string  the last usage batch number of member M applied, so a batch
                                retried after a lost reply is applied once; TTL one day.
======================  ======  ===============================================================

The lease scores and the rate window are computed from the clock of the node that writes
them (the injected clock), so the nodes' clocks are assumed to agree to well within
``heartbeat_s`` (NTP). Member liveness uses Redis's own key expiry.

The scripts touch only standalone-Redis keys (``MEMBERS`` reads member hashes it finds in
the index), so the layout is for a single Redis primary (with or without Sentinel), not
Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from .usage import USAGE_FIELDS

FLUSH_MARKER_TTL_S = 86_400
"""How long a member's last-applied batch number is kept: longer than any retry of the
same batch (a batch is retried at each heartbeat until one succeeds)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names under one deployment prefix; see the module docstring."""

    prefix: str

    @property
    def members(self) -> str:
        return f"{self.prefix}:members"

    @property
    def member_prefix(self) -> str:
        return f"{self.prefix}:member:"

    def member(self, member_id: str) -> str:
        return f"{self.member_prefix}{member_id}"

    def leases(self, key_id: str) -> str:
        return f"{self.prefix}:leases:{key_id}"

    def rate(self, key_id: str, window: int) -> str:
        return f"{self.prefix}:rate:{key_id}:{window}"

    def usage(self, key_id: str) -> str:
        return f"{self.prefix}:usage:{key_id}"

    @property
    def usage_keys(self) -> str:
        return f"{self.prefix}:usage_keys"

    def flushed(self, member_id: str) -> str:
        return f"{self.prefix}:flushed:{member_id}"


ACQUIRE = """
-- KEYS: leases zset, rate counter
-- ARGV: now, lease expiry, lease entry, max_sessions, sessions_per_minute,
--       leases TTL (ms), rate counter TTL (s)
-- Returns 'ok', 'concurrent' or 'rate'. Counting and adding happen in one script so
-- two nodes admitting at once cannot both take the last slot.
local now = tonumber(ARGV[1])
-- An entry past its expiry belongs to a member that stopped heartbeating.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max_sessions = tonumber(ARGV[4])
if max_sessions > 0 and redis.call('ZCARD', KEYS[1]) >= max_sessions then
  return 'concurrent'
end
local per_minute = tonumber(ARGV[5])
if per_minute > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= per_minute then
  return 'rate'
end
-- Admitted sessions count whatever this node's limits are, so nodes with other
-- limits (a rolling configuration change) still see them.
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 'ok'
"""

MEMBERS = """
-- KEYS: members index
-- ARGV: member key prefix
-- Returns the HGETALL of every live member; drops index entries whose hash expired.
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local record = redis.call('HGETALL', ARGV[1] .. id)
  if #record == 0 then
    redis.call('SREM', KEYS[1], id)
  else
    table.insert(out, record)
  end
end
return out
"""

_FIELDS_LUA = "{" + ", ".join(f"'{name}'" for name in USAGE_FIELDS) + "}"

FLUSH_USAGE = f"""
-- KEYS: this member's flush marker, usage index, then one usage hash per key id
-- ARGV: batch number, marker TTL (s), then per key id: the id and its {len(USAGE_FIELDS)} values
-- Returns 1 when applied, 0 when this batch (or a later one) was applied before: a batch
-- whose reply was lost is retried with the same number and must not count twice.
local fields = {_FIELDS_LUA}
local batch = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if batch <= last then
  return 0
end
local stride = #fields + 1
for i = 3, #KEYS do
  local base = 3 + (i - 3) * stride
  redis.call('SADD', KEYS[2], ARGV[base])
  for f = 1, #fields do
    local value = ARGV[base + f]
    if tonumber(value) ~= 0 then
      redis.call('HINCRBYFLOAT', KEYS[i], fields[f], value)
    end
  end
end
redis.call('SET', KEYS[1], batch, 'EX', ARGV[2])
return 1
"""


def flush_usage_args(
    keys: Keys, member_id: str, batch: int, usage: dict[str, dict[str, float]]
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of :data:`FLUSH_USAGE` for one batch."""
    script_keys = [keys.flushed(member_id), keys.usage_keys]
    args = [str(batch), str(FLUSH_MARKER_TTL_S)]
    for key_id, fields in usage.items():
        script_keys.append(keys.usage(key_id))
        args.append(key_id)
        args.extend(repr(float(fields.get(name, 0.0))) for name in USAGE_FIELDS)
    return script_keys, args

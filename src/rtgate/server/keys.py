"""Per-API-key limits and usage across the deployment (issue 12).

Every session is counted under an *account*: the identity (a non-secret hash,
server/scope.py ``key_id``) of the standard API key that opened it — for a session opened
with an ephemeral key, of the standard key that minted that ephemeral key
(:attr:`Grant.account`, carried inside the signed key). With no API keys configured, the
key the client sent stands for the account.

Limits (settings ``key_max_sessions``, ``key_sessions_per_minute``; 0 = none) are checked
in the cluster store (:mod:`rtgate.cluster`): across every node and worker with
``redis_url``, per process without it. A session over a limit is refused with the cloud's
rate-limit shape — ``error`` type ``rate_limit_error``, code ``rate_limit_exceeded``, and
close 1013 (Try Again Later) on a WebSocket, HTTP 429 with ``Retry-After`` on REST — and is
counted on ``/metrics`` (``rtgate_sessions_refused_total{reason="key_limit"}``). While Redis
is unreachable the limits fail open (the store's policy): sessions go on being admitted.

Usage (sessions, input and output audio seconds, tokens) is added when a session ends and
summed per account in the store; ``/metrics`` shows it (``rtgate_key_*``, labelled by the
first 12 hex digits of the account) and ``GET /admin/usage`` returns it whole, to a holder
of one of the ``admin_keys``.
"""

from __future__ import annotations

import math
from typing import Any

from ..cluster import KeyLimits, Lease, Refused
from ..core.session import Session
from ..protocol.errors import RealtimeError
from .auth import Credential, Grant
from .scope import key_id

RATE_LIMIT_TYPE = "rate_limit_error"
RATE_LIMIT_CODE = "rate_limit_exceeded"


def account_of(grant: Grant, credential: Credential | None) -> str:
    """The account a session of ``grant`` counts under (see the module docstring)."""
    if grant.account:
        return grant.account
    return key_id(credential.value) if credential is not None else "anonymous"


def key_limits(settings: Any) -> KeyLimits:
    return KeyLimits(max_sessions=settings.capacity.key_max_sessions,
                     sessions_per_minute=settings.capacity.key_sessions_per_minute)


def refusal(refused: Refused) -> RealtimeError:
    """The error for a session refused by its key's limit."""
    if refused.reason == "rate":
        message = (f"Rate limit reached: this API key may open {refused.limit} sessions per "
                   f"minute on this service. Try again in {math.ceil(refused.retry_after_s)} s.")
    else:
        message = (f"Rate limit reached: this API key may hold {refused.limit} sessions at once "
                   "on this service. Close one, or try again later.")
    return RealtimeError(message, RATE_LIMIT_CODE, type=RATE_LIMIT_TYPE)


async def admit(state: Any, account: str) -> Lease | Refused:
    """A lease for one more session of ``account``, or why not (counted on ``/metrics``)."""
    cluster = state.node.cluster
    result: Lease | Refused = await cluster.acquire(account, key_limits(state.settings))
    if isinstance(result, Refused) and state.metrics is not None:
        state.metrics.sessions_refused.inc("key_limit")
    return result


def record_session(state: Any, account: str, session: Session | None) -> None:
    """Add an ended session's usage to its account (a relayed session: the session only)."""
    cluster = state.node.cluster
    if session is None:
        cluster.add_usage(account, sessions=1)
        return
    totals = session.totals
    cluster.add_usage(account, sessions=1, audio_in_s=session.buffer.end_ms / 1000,
                      audio_out_s=totals.audio_out_ms / 1000, input_tokens=totals.input_tokens,
                      output_tokens=totals.output_tokens)


__all__ = ["account_of", "admit", "key_limits", "record_session", "refusal"]

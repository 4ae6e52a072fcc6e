"""The deployment's view: ``GET /admin/usage`` and the cluster lines of ``/metrics``.

``GET /admin/usage`` answers, to a holder of one of the ``admin_keys`` (``Authorization:
Bearer <admin key>``; the route is off — 404 — when none is configured), the usage of
every account (server/keys.py) summed across the cluster, and the live processes::

    {"object": "rtgate.usage",
     "redis": true,                      # whether the totals are the cluster's
     "accounts": [{"account": "3f2a…", "sessions": 12, "audio_in_s": 81.2, "audio_out_s": 64.0,
                   "input_tokens": 950, "output_tokens": 1210}, …],
     "members": [{"id": "a1b2c3d4", "url": "http://10.0.0.5:41234", "host": "node-1",
                  "pid": 7, "sessions": 3, "draining": false, "started_at": 1765000000.0}, …]}

Accounts are non-secret hashes of the API keys (compute yours with ``sha256(key)[:32]``
in hex); keys themselves are never stored or shown.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..cluster import USAGE_FIELDS
from ..protocol.errors import RealtimeError
from .auth import extract_credential
from .client_secrets import error_response

ACCOUNT_LABEL_HEX = 12
"""Hex digits of an account shown as a ``/metrics`` label (enough to tell keys apart)."""
MAX_ACCOUNT_SERIES = 512
"""Accounts shown on ``/metrics``, the most used first (by sessions); all are on the admin route."""

_KEY_FAMILIES = (
    ("sessions", "rtgate_key_sessions_total", "Sessions ended, by account (API key hash)."),
    ("audio_in_s", "rtgate_key_audio_in_seconds_total", "Input audio of ended sessions, seconds."),
    ("audio_out_s", "rtgate_key_audio_out_seconds_total", "Output audio of ended sessions, seconds."),
    ("input_tokens", "rtgate_key_input_tokens_total", "Input tokens of ended sessions."),
    ("output_tokens", "rtgate_key_output_tokens_total", "Output tokens of ended sessions."),
)


def _is_admin(request: Request, admin_keys: tuple[str, ...]) -> bool:
    credential = extract_credential(request.headers, request.query_params, [])
    if credential is None:
        return False
    ok = False
    for key in admin_keys:  # every key compared, so timing does not tell which matched
        ok |= hmac.compare_digest(credential.value.encode(), key.encode())
    return ok


async def usage_endpoint(request: Request) -> Response:
    state = request.app.state.rtgate
    admin_keys = state.settings.auth.admin_keys
    if not admin_keys:
        return error_response(404, RealtimeError(
            "The admin routes are off: configure RTGATE_ADMIN_KEYS to use them.", "not_found"))
    if not _is_admin(request, admin_keys):
        return error_response(401, RealtimeError(
            "This route needs one of the server's admin keys (RTGATE_ADMIN_KEYS).", "invalid_api_key"))
    cluster = state.node.cluster
    usage = await cluster.usage()
    members = await cluster.members()
    accounts = [{"account": account, **{f: totals.get(f, 0.0) for f in USAGE_FIELDS}}
                for account, totals in sorted(usage.items())]
    return JSONResponse({
        "object": "rtgate.usage",
        "redis": bool(state.settings.cluster.redis_url),
        "accounts": accounts,
        "members": [dataclasses.asdict(m) for m in members],
    })


async def cluster_lines(state: Any) -> list[str]:
    """Exposition lines for this process's sessions, the cluster and per-account usage."""
    cluster = state.node.cluster if state.node is not None else None
    lines = [
        "# HELP rtgate_sessions_active Sessions open on this process now (local, relayed, calls).",
        "# TYPE rtgate_sessions_active gauge",
        f"rtgate_sessions_active {state.active_sessions}",
        "# HELP rtgate_draining 1 while this process drains (SIGTERM), else 0.",
        "# TYPE rtgate_draining gauge",
        f"rtgate_draining {int(state.drain.draining)}",
    ]
    if cluster is None:
        return lines
    if state.settings.cluster.redis_url:
        members = await cluster.members()
        lines += [
            "# HELP rtgate_cluster_members Live processes of the deployment (Redis membership).",
            "# TYPE rtgate_cluster_members gauge",
            f"rtgate_cluster_members {len(members)}",
            "# HELP rtgate_redis_reachable 1 while Redis answers, else 0 (limits fail open).",
            "# TYPE rtgate_redis_reachable gauge",
            f"rtgate_redis_reachable {int(cluster.reachable)}",
        ]
    usage = await cluster.usage()
    top = sorted(usage.items(), key=lambda item: -item[1].get("sessions", 0.0))[:MAX_ACCOUNT_SERIES]
    for field, name, help_text in _KEY_FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{account="{account[:ACCOUNT_LABEL_HEX]}"}} {totals.get(field, 0.0):g}'
                  for account, totals in top]
    return lines


__all__ = ["cluster_lines", "usage_endpoint"]

"""Opening the upstream GA WebSocket for a relayed session (docs/protocol.md, Endpoints and
Handshake and authentication).

The URL is the upstream's ``base_url`` with ``http`` → ``ws`` and ``https`` → ``wss``,
plus ``/realtime?model=<upstream model, else the client's>`` (and ``intent`` when the
client asked for a transcription session). The credential is read from the environment
variable the configuration names, at connect time, and sent as ``api-key`` (Azure) or
``Authorization: Bearer`` (OpenAI). It never appears in an error, a log line or a metric.

Every way the upstream cannot be reached becomes an :class:`UpstreamUnavailable` whose
message says what happened (refused, unreachable, name not resolved, timed out, HTTP
status) and names the upstream and its host only.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from .config import UpstreamConfig

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Timeouts and sizes of relayed sessions (from the ``relay_*`` settings)."""

    connect_timeout_s: float = 5.0
    """Seconds to open the upstream WebSocket (TCP, TLS, HTTP upgrade)."""
    ping_interval_s: float = 5.0
    """WebSocket ping interval towards the upstream (the transport-level keepalive)."""
    ping_timeout_s: float = 5.0
    """Seconds without a pong before the upstream counts as lost."""
    close_timeout_s: float = 2.0
    """Seconds to wait for the upstream's close frame when rtgate closes."""
    answer_deadline_s: float = 8.0
    """Seconds the upstream may stay silent after connecting, and after a client event that
    must be answered (anything but ``input_audio_buffer.append``), before it counts as stalled."""
    max_frame_bytes: int = 21 * MIB
    """Largest frame accepted from the upstream."""
    send_deadline_s: float = 10.0
    """Seconds one send to the client may block before the client counts as not reading
    (close 1008); the ``send_deadline_s`` setting, as in the local pipeline."""
    client_ping_interval_s: float = 20.0
    """Keepalive ping interval towards a spliced client (the ``ping_interval_s`` setting,
    which uvicorn applies to every other connection); 0: none."""
    client_ping_timeout_s: float = 20.0
    """Seconds without a pong before a spliced client counts as gone (``ping_timeout_s``)."""


class UpstreamUnavailable(Exception):
    """The upstream could not be opened.

    ``code`` is the error code sent to the client and ``close_code`` the WebSocket close:
    ``1013`` (Try Again Later) when retrying may help — refused, unreachable, not resolved,
    timed out, HTTP 429 or 5xx; ``1011`` when it will not until the configuration changes —
    no credential, HTTP 4xx (a wrong upstream key, a wrong ``base_url`` path).
    """

    def __init__(self, message: str, code: str = "upstream_unavailable", close_code: int = 1013) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.close_code = close_code


def upstream_url(upstream: UpstreamConfig, model: str, *, intent: str | None = None) -> str:
    """``ws(s)://…/realtime?model=…`` for ``upstream`` and the client's ``model``."""
    base = upstream.base_url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            base = ws + base[len(http) :]
    query = {"model": upstream.model or model}
    if intent:
        query["intent"] = intent
    return f"{base}/realtime?{urlencode(query)}"


def upstream_headers(upstream: UpstreamConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The auth header for ``upstream``; raises :class:`UpstreamUnavailable` without a key."""
    env = os.environ if environ is None else environ
    key = env.get(upstream.api_key_env, "").strip()
    if not key:
        raise UpstreamUnavailable(
            f"The relay upstream '{upstream.name}' has no credential: the environment variable "
            f"{upstream.api_key_env} named by its api_key_env is unset or empty on the rtgate server.",
            "upstream_misconfigured",
            1011,
        )
    if upstream.kind == "azure":
        return {"api-key": key}
    return {"Authorization": f"Bearer {key}"}


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s opening the connection"
    if isinstance(exc, InvalidStatus):
        return f"the upgrade was rejected with HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "the host name could not be resolved"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or 'handshake error'})"
    if isinstance(exc, InvalidURI):
        return "the configured base_url is not a valid WebSocket URL"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, WebSocketException):
        return f"the WebSocket handshake failed ({type(exc).__name__})"
    return type(exc).__name__


async def open_upstream(
    upstream: UpstreamConfig,
    model: str,
    limits: RelayLimits,
    *,
    intent: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConnection:
    """Connect to ``upstream``; raises :class:`UpstreamUnavailable` with a client-safe reason."""
    headers = upstream_headers(upstream, environ)
    url = upstream_url(upstream, model, intent=intent)
    try:
        return await connect(
            url,
            additional_headers=headers,
            open_timeout=limits.connect_timeout_s,
            ping_interval=limits.ping_interval_s,
            ping_timeout=limits.ping_timeout_s,
            close_timeout=limits.close_timeout_s,
            max_size=limits.max_frame_bytes,
            compression=None,  # audio does not compress; inflating costs CPU and memory
            proxy=None,  # never route the upstream key through an environment proxy
            user_agent_header="rtgate-relay",
        )
    except Exception as exc:
        raise connect_failure(upstream, url, exc, limits) from None


def connect_failure(
    upstream: UpstreamConfig, url: str, exc: BaseException, limits: RelayLimits
) -> UpstreamUnavailable:
    """The client-safe :class:`UpstreamUnavailable` for ``exc`` raised opening ``url``:
    HTTP 4xx but 429 is ``upstream_rejected`` (1011), anything else ``upstream_unavailable``
    (1013). Names the upstream and its host only."""
    host = urlsplit(url).hostname or "?"
    rejected = isinstance(exc, InvalidStatus) and exc.response.status_code < 500 and (
        exc.response.status_code != 429
    )
    return UpstreamUnavailable(
        f"The relay upstream '{upstream.name}' ({host}) is unavailable: "
        f"{_describe(exc, limits.connect_timeout_s)}.",
        "upstream_rejected" if rejected else "upstream_unavailable",
        1011 if rejected else 1013,
    )


def upstream_rest_url(upstream: UpstreamConfig, path: str) -> str:
    """``base_url`` as an ``http(s)://`` URL, plus ``path``."""
    base = upstream.base_url.rstrip("/")
    for ws, http in (("wss://", "https://"), ("ws://", "http://")):
        if base.startswith(ws):
            base = http + base[len(ws) :]
    return base + path


async def mint_upstream_client_secret(
    upstream: UpstreamConfig,
    body: dict[str, Any],
    limits: RelayLimits,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the upstream's ``/realtime/client_secrets``; ``(status, JSON body)``.

    The session's ``model`` becomes the upstream's model when the config names one. Raises
    :class:`UpstreamUnavailable` when the upstream cannot be reached or does not answer JSON.
    """
    import httpx

    headers = upstream_headers(upstream, environ)
    if upstream.model and isinstance(body.get("session"), dict):
        body = {**body, "session": {**body["session"], "model": upstream.model}}
    url = upstream_rest_url(upstream, "/realtime/client_secrets")
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=limits.connect_timeout_s) as http:
            reply = await http.post(url, json=body, headers=headers)
        payload = reply.json()
    except Exception as exc:
        host = urlsplit(url).hostname or "?"
        if isinstance(exc, ValueError):
            what = "the reply was not JSON"
        elif isinstance(exc, httpx.TimeoutException):
            what = f"timed out after {limits.connect_timeout_s:g} s"
        elif isinstance(exc, httpx.ConnectError):
            what = "connection refused or host unreachable"
        else:
            what = type(exc).__name__
        raise UpstreamUnavailable(
            f"The relay upstream '{upstream.name}' ({host}) could not mint a client secret: {what}."
        ) from None
    if not isinstance(payload, dict):
        raise UpstreamUnavailable(
            f"The relay upstream '{upstream.name}' answered client_secrets with non-object JSON."
        )
    return reply.status_code, payload

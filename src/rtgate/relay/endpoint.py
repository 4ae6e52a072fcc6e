"""The relay branch of the Realtime WebSocket endpoint (``server/realtime_ws.py``).

Called after authentication and model routing, when the model routes to an upstream: the
session skips the local core entirely. A Preview client gets the Preview dialect on both
edges; an ephemeral key's bound session is applied upstream first. A GA client's session
is spliced (frames pass as raw bytes, relay/splice.py) when ``relay_splice`` is on and the
endpoint armed the connection's hook with :func:`arm_splice` before accepting it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..asgi.close import close_or_drop
from ..asgi.hooks import SPLICE_EXTENSION
from ..protocol.errors import shutting_down
from ..protocol.preview import PreviewState
from .config import UpstreamConfig
from .metrics import RelayMetrics
from .preview import PreviewDialect
from .session import ClientGone, RelaySession
from .upstream import RelayLimits

log = logging.getLogger("rtgate.relay")


class StarletteClient:
    """:class:`~rtgate.relay.session.ClientSocket` over a Starlette WebSocket.

    :meth:`close` waits at most ``close_timeout_s`` to hand the close frame to the socket;
    a client that stops reading never lets it through (the server's write buffer stays
    full), so its connection is then dropped (:func:`rtgate.asgi.close.close_or_drop`).
    """

    def __init__(self, ws: WebSocket, close_timeout_s: float = 2.0) -> None:
        self._ws = ws
        self._gone = False
        self._close_timeout_s = close_timeout_s

    async def receive(self) -> str | bytes | None:
        if self._gone:
            return None
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            self._gone = True
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send_text(self, text: str) -> None:
        if self._gone:
            raise ClientGone
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._gone = True
            raise ClientGone from None

    async def send_bytes(self, data: bytes) -> None:
        if self._gone:
            raise ClientGone
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._gone = True
            raise ClientGone from None

    async def close(self, code: int, reason: str) -> None:
        if self._gone:
            return
        self._gone = True
        await close_or_drop(self._ws, code, reason, self._close_timeout_s)


def arm_splice(ws: WebSocket, *, may_splice: bool) -> None:
    """Before ``websocket.accept``: arm the connection's splice hook when the session may
    be a spliced GA relay (the server decides: ``relay_splice`` on, a GA client, some
    route to an upstream).

    Arming costs nothing for a session that turns out local: its first receive or send
    releases the hook (server/ws_protocol.py).
    """
    if not may_splice:
        return
    splice = ws.scope.get("extensions", {}).get(SPLICE_EXTENSION)
    if splice is not None:
        splice.arm()


async def relay_endpoint(
    ws: WebSocket,
    upstream: UpstreamConfig,
    model: str,
    *,
    limits: RelayLimits,
    splice_enabled: bool,
    metrics: RelayMetrics | None,
    on_drain: Callable[[Callable[[], None]], Callable[[], None]] | None,
    bound_session: dict[str, Any] | None,
    transcription: bool,
    preview: bool,
) -> None:
    """Relay one accepted, authenticated client socket to ``upstream`` until either side ends.

    The caller (the server) has admitted the session and counts it (its slot, its key's
    lease) and hands in what the relay needs of it: the ``limits``, whether a GA session
    may be spliced, the relay's ``metrics``, and ``on_drain`` (registers a callback for a
    drain of the process; returns the function that removes it)."""
    client = StarletteClient(ws, close_timeout_s=limits.close_timeout_s)
    dialect = (
        PreviewDialect(PreviewState(transcription=transcription, client_model=model)) if preview else None
    )
    splice = ws.scope.get("extensions", {}).get(SPLICE_EXTENSION)
    if splice is not None and not splice.armed:
        splice = None
    if splice is not None and (preview or not splice_enabled):
        splice.release()
        splice = None
    session = RelaySession(
        upstream=upstream,
        model=model,
        client=client,
        limits=limits,
        metrics=metrics,
        intent="transcription" if transcription else None,
        bound_session=bound_session,
        dialect=dialect,
        splice=splice,
    )
    unregister = on_drain(lambda: session.shut_down(shutting_down())) if on_drain else None
    try:
        await session.run()
    finally:
        if unregister is not None:
            unregister()

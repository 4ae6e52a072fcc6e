"""A session's text channel over a Starlette WebSocket (the ``Channel`` a session runner
writes to: :class:`rtgate.transport.connection.Channel`), for the WebSocket endpoint and a
WebRTC call's sideband alike."""

from __future__ import annotations

from starlette.websockets import WebSocket

from .close import close_or_drop


class StarletteChannel:
    """A session's channel over a Starlette WebSocket; a close that cannot be written
    within ``close_timeout_s`` (a client that stopped reading) drops the connection."""

    def __init__(self, ws: WebSocket, close_timeout_s: float = 10.0) -> None:
        self._ws = ws
        self._close_timeout_s = close_timeout_s

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        await close_or_drop(self._ws, code, reason, self._close_timeout_s)

"""Refusing a WebSocket that was accepted but will not get a session.

The cloud service always completes the upgrade and reports a refusal (bad key, unknown
model, server busy, …) as the first frame, an ``error`` event, followed by a close whose
reason is ``"<error.type>.<error.code>"`` (docs/protocol.md, Handshake and
authentication). Every entry point (the Realtime socket, a call's sideband, a forwarded
socket) refuses through :func:`refuse`.
"""

from __future__ import annotations

import orjson
from starlette.websockets import WebSocket

from ..core.ids import IdFactory
from ..protocol.errors import RealtimeError, error_event


def error_frame(error: RealtimeError) -> str:
    """``error`` as the text of one ``error`` server event with a fresh event id."""
    return orjson.dumps(error_event(error, IdFactory().event())).decode()


async def refuse(ws: WebSocket, error: RealtimeError, close_code: int) -> None:
    """Send ``error`` as an ``error`` event, then close with ``close_code``."""
    await ws.send_text(error_frame(error))
    await ws.close(close_code, error.close_reason)

"""Closing a client WebSocket that may have stopped reading.

A close frame is a send like any other: uvicorn writes it only once its write buffer
drains, which a client that stops reading never lets happen (and a closing transport
waits for the same drain). So a close gets a deadline, after which the TCP connection is
dropped. ASGI has no message for that; uvicorn's ``receive`` callable is a bound method of
its protocol, which holds the transport. Under another server without one, nothing
happens and the connection goes when the server's keepalive or the client gives up.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("rtgate.ws")


def drop(ws: WebSocket) -> None:
    """Drop the client's TCP connection at once."""
    protocol = getattr(ws._receive, "__self__", None)
    abort = getattr(getattr(protocol, "transport", None), "abort", None)
    if callable(abort):
        abort()


async def close_or_drop(ws: WebSocket, code: int, reason: str, timeout_s: float) -> None:
    """Send a close frame within ``timeout_s``, else drop the connection."""
    try:
        async with asyncio.timeout(timeout_s):
            await ws.close(code, reason[:120])
    except TimeoutError:
        log.info("client socket not writable within %g s of the close; dropping it", timeout_s)
        drop(ws)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass

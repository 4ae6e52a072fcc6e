"""uvicorn's WebSocket protocol with read flow control by buffered bytes, not per message.

uvicorn's ``websockets-sansio`` protocol (the one rtgate uses; the legacy ``websockets``
one is deprecated and measured slower, and ``wsproto`` inflates without a cap) pauses
reading from the socket after *every* message and resumes when the app has taken it: two
``epoll_ctl`` system calls per message. A realtime session sends 50 small audio messages
a second, and those calls were ~18 % of the event loop's time at 100 sessions
(docs/benchmarks.md, Load).

:class:`BufferedSansIOProtocol` keeps uvicorn's behaviour except for the pause rule:
reading pauses only once the messages waiting for the app hold more than
``read_buffer_bytes`` (a message bigger than that still pauses at once, as before), and
resumes when the app has taken every waiting message (uvicorn's rule). Memory per
connection stays bounded by ``read_buffer_bytes`` plus one message.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

DEFAULT_READ_BUFFER_BYTES = 256 * 1024
"""Message bytes a connection may hold for the app before reading pauses (~4 s of 24 kHz
PCM16 sent as base64 JSON)."""


class BufferedSansIOProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` that pauses reading by buffered bytes; see the module docstring."""

    read_buffer_bytes = DEFAULT_READ_BUFFER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued_bytes = 0

    def send_receive_event_to_app(self) -> None:
        if self.read_paused:
            super().send_receive_event_to_app()
            return
        size = 0
        for frame in self.frames:
            size += len(frame)
        self._queued_bytes += size
        if self._queued_bytes <= self.read_buffer_bytes:
            # The parent pauses reading unless it is paused already; under the limit it
            # must not, so it is told so for the duration of the call.
            self.read_paused = True
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = False
        else:
            super().send_receive_event_to_app()

    async def receive(self) -> Any:
        message: Any = await super().receive()
        if self.queue.empty():
            self._queued_bytes = 0
        else:
            payload = message.get("text") or message.get("bytes") or b""
            self._queued_bytes = max(0, self._queued_bytes - len(payload))
        return message


def ws_protocol(read_buffer_bytes: int = DEFAULT_READ_BUFFER_BYTES) -> type[BufferedSansIOProtocol]:
    """A :class:`BufferedSansIOProtocol` class for uvicorn's ``ws=`` with this limit."""
    if read_buffer_bytes < 0:
        raise ValueError("read_buffer_bytes must be ≥ 0")
    return type(
        "BufferedSansIOProtocol",
        (BufferedSansIOProtocol,),
        {"read_buffer_bytes": read_buffer_bytes},
    )


def uvicorn_ws_options(settings: Any) -> dict[str, Any]:
    """uvicorn ``Config`` keyword arguments for rtgate's WebSocket endpoint (one place)."""
    return {
        "ws": ws_protocol(settings.ws_read_buffer_bytes),
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.ping_interval_s,
        "ws_ping_timeout": settings.ping_timeout_s,
        "ws_per_message_deflate": False,
    }


__all__ = ["DEFAULT_READ_BUFFER_BYTES", "BufferedSansIOProtocol", "uvicorn_ws_options", "ws_protocol"]

"""Read flow control of rtgate's uvicorn WebSocket protocol (server/ws_protocol.py).

These drive the protocol's message hand-off directly, so a uvicorn release that changes
the internals the subclass relies on fails here rather than in production.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.server import ServerState

from rtgate.server.settings import Settings
from rtgate.server.ws_protocol import BufferedSansIOProtocol, uvicorn_ws_options


class CountingTransport:
    """Counts ``pause_reading`` / ``resume_reading``; the rest is inert."""

    def __init__(self) -> None:
        self.pauses = 0
        self.resumes = 0

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


def _protocol(read_buffer_bytes: int) -> tuple[BufferedSansIOProtocol, CountingTransport]:
    options = uvicorn_ws_options(Settings(ws_read_buffer_bytes=read_buffer_bytes))
    config = uvicorn.Config(_app, **options)
    config.load()
    protocol = options["ws"](config=config, server_state=ServerState(), app_state={})
    transport = CountingTransport()
    protocol.transport = transport
    return protocol, transport


def _arrive(protocol: BufferedSansIOProtocol, text: str) -> None:
    protocol.curr_msg_data_type = "text"
    protocol.frames = [text.encode()]
    protocol.send_receive_event_to_app()


async def test_small_messages_do_not_pause_reading() -> None:
    """Messages under the buffer limit queue for the app without pausing the socket."""
    protocol, transport = _protocol(1000)
    for _ in range(5):
        _arrive(protocol, "x" * 100)
    for _ in range(5):
        assert (await protocol.receive()) == {"type": "websocket.receive", "text": "x" * 100}
    assert (transport.pauses, transport.resumes) == (0, 0)


async def test_reading_pauses_past_the_limit_and_resumes_when_drained() -> None:
    """Past ``ws_read_buffer_bytes`` reading pauses once; it resumes when the app took all."""
    protocol, transport = _protocol(250)
    for _ in range(4):
        _arrive(protocol, "x" * 100)
    assert transport.pauses == 1
    for _ in range(3):
        await protocol.receive()
    assert transport.resumes == 0
    await protocol.receive()
    assert transport.resumes == 1
    _arrive(protocol, "x" * 100)  # the count starts over once the queue drained
    assert transport.pauses == 1


async def test_a_zero_limit_pauses_on_every_message_like_uvicorn() -> None:
    """``ws_read_buffer_bytes = 0`` keeps uvicorn's own rule: pause after each message."""
    protocol, transport = _protocol(0)
    for _ in range(3):
        _arrive(protocol, "x")
        await protocol.receive()
    assert (transport.pauses, transport.resumes) == (3, 3)

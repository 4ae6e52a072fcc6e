"""Read flow control and direct text messages of rtgate's uvicorn WebSocket protocol
(server/ws_protocol.py).

These drive the protocol's message hand-off directly, so a uvicorn release that changes
the internals the subclass relies on fails here rather than in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState
from websockets.protocol import State

from rtgate.server.settings import Settings
from rtgate.server.ws_protocol import BufferedSansIOProtocol, MessageTap, uvicorn_ws_options


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
    _arrive_raw(protocol, "text", text.encode())


def _arrive_raw(protocol: BufferedSansIOProtocol, kind: str, data: bytes) -> None:
    """What uvicorn's parser does with a whole message of ``kind`` ("text" or "bytes")."""
    protocol.curr_msg_data_type = kind  # type: ignore[assignment]
    protocol.frames = [data]
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


# -- direct text messages (MessageTap)


class RecordingTransport(CountingTransport):
    """Keeps what the protocol writes and whether it closed the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _open_protocol() -> tuple[BufferedSansIOProtocol, RecordingTransport]:
    protocol, _ = _protocol(1000)
    transport = RecordingTransport()
    protocol.transport = transport
    protocol.conn.state = State.OPEN  # past the handshake, as when an app attaches
    return protocol, transport


def _tapped() -> tuple[BufferedSansIOProtocol, RecordingTransport, list[str]]:
    """An open protocol whose tap hands text messages to the returned list."""
    protocol, transport = _open_protocol()
    seen: list[str] = []
    MessageTap(protocol).attach(seen.append)
    return protocol, transport, seen


async def _parked_receive(protocol: BufferedSansIOProtocol) -> asyncio.Task[Any]:
    """The app waiting in ``receive`` on an empty queue, as realtime_ws.py does."""
    task = asyncio.create_task(protocol.receive())
    await asyncio.sleep(0)  # let it reach the wait (a scheduling step, not a timing guess)
    assert protocol._app_parked
    return task


async def test_text_goes_to_the_tap_while_the_app_waits() -> None:
    """A text message reaches the handler at once and never enters the queue."""
    protocol, _, seen = _tapped()
    waiting = await _parked_receive(protocol)
    _arrive(protocol, '{"type":"a"}')
    _arrive(protocol, '{"type":"b"}')
    assert seen == ['{"type":"a"}', '{"type":"b"}']
    assert protocol.queue.empty() and not waiting.done()
    waiting.cancel()


async def test_messages_queue_while_the_app_is_not_waiting() -> None:
    """Order is kept: with the app busy, or earlier messages queued, messages queue."""
    protocol, _, seen = _tapped()
    _arrive(protocol, "first")  # the app is not in receive
    _arrive(protocol, "second")
    assert seen == []
    assert (await protocol.receive())["text"] == "first"
    # The app takes the next one itself: a queued message is never overtaken.
    assert (await protocol.receive())["text"] == "second"
    waiting = await _parked_receive(protocol)
    _arrive(protocol, "third")
    assert seen == ["third"]
    waiting.cancel()


async def test_a_message_behind_a_queued_one_queues_too() -> None:
    """A binary message queues (the app reports it); the text after it waits behind it."""
    protocol, _, seen = _tapped()
    waiting = await _parked_receive(protocol)
    _arrive_raw(protocol, "bytes", b"\x00\x01")
    _arrive(protocol, "after")  # the app has not run yet: the binary is still queued
    assert seen == []
    assert (await waiting)["bytes"] == b"\x00\x01"
    assert (await protocol.receive())["text"] == "after"


async def test_detach_restores_the_asgi_path() -> None:
    protocol, _ = _open_protocol()
    seen: list[str] = []
    tap = MessageTap(protocol)
    tap.attach(seen.append)
    tap.detach()
    waiting = await _parked_receive(protocol)
    _arrive(protocol, "x")
    assert seen == []
    assert (await waiting)["text"] == "x"


async def test_invalid_utf8_keeps_uvicorns_1007() -> None:
    """Bytes that are not UTF-8 never reach the handler; uvicorn closes with 1007."""
    protocol, transport, seen = _tapped()
    waiting = await _parked_receive(protocol)
    _arrive_raw(protocol, "text", b"\xff\xfe")
    assert seen == []
    message = await waiting
    assert message == {"type": "websocket.disconnect", "code": 1007, "reason": ""}
    assert transport.written[:2] == b"\x88\x02"  # a close frame, code only
    assert int.from_bytes(transport.written[2:4], "big") == 1007


async def test_a_handler_that_raises_fails_the_connection_with_1011() -> None:
    """As an app that raises: logged, the client gets close 1011, the app a disconnect."""
    protocol, transport = _open_protocol()

    def broken(text: str) -> None:
        raise RuntimeError("bug")

    MessageTap(protocol).attach(broken)
    waiting = await _parked_receive(protocol)
    _arrive(protocol, "x")
    message = await waiting
    assert message["type"] == "websocket.disconnect" and message["code"] == 1011
    assert transport.closed
    assert int.from_bytes(transport.written[2:4], "big") == 1011
    assert protocol._on_text is None
    _arrive(protocol, "y")  # after the close, messages are dropped (uvicorn's rule)
    assert protocol.queue.empty()


# -- writes after the socket failed (issue 17)


class ClosingTransport(RecordingTransport):
    """A socket asyncio has already given up on (``_force_close``): ``is_closing`` is true
    while ``connection_lost`` is still one loop turn away."""

    def is_closing(self) -> bool:
        return True


async def test_a_send_to_a_failed_socket_raises_instead_of_writing() -> None:
    """A writer with events queued learns at its first send that the socket failed: no
    write reaches the transport (each one logged "socket.send() raised exception")."""
    protocol, _ = _open_protocol()
    transport = ClosingTransport()
    protocol.transport = transport
    protocol.handshake_complete = True
    with pytest.raises(ClientDisconnected):
        await protocol.send({"type": "websocket.send", "text": "x"})
    assert transport.written == b""

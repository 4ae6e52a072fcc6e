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

**Splicing.** Every connection offers a :class:`Splice` in
``scope["extensions"]["rtgate.splice"]`` (the keys and the interfaces the relay uses are in
:mod:`rtgate.asgi.hooks`): an app that may relay the socket's frames as raw bytes
(relay/splice.py) arms it *before* ``websocket.accept``. From the moment the 101
response is written, received bytes then go to a raw buffer, never to the websockets
parser, so no frame is ever half parsed. The app then either

* takes the connection (:meth:`Splice.take`): uvicorn's keepalive never starts, and every
  later byte, the connection's loss, write flow control and server shutdown go to the
  app's :class:`RawSink`; the app writes frames to the transport itself; or
* releases it (:meth:`Splice.release`): the buffered bytes are fed to the parser and the
  connection is uvicorn's again. Any other ASGI use of an armed connection — a send other
  than the accept, a receive after it — releases it first, so an app that does not splice
  behaves as it would without the hook.

The raw buffer before ``take`` holds about ``read_buffer_bytes``; reading pauses beyond.
A client must not send frames before it has read the 101 (RFC 6455 §4.1); bytes that
arrive with the upgrade request itself are parsed by uvicorn, as without the hook.

**Direct text messages.** Every connection also offers a :class:`MessageTap` in
``scope["extensions"]["rtgate.tap"]``. An app whose handling of a text message never
awaits (a local session: decode, core, VAD queue) attaches a synchronous handler; a whole
text message then goes from the parser straight to it, inside ``data_received``, instead
of through uvicorn's queue, a task wake-up and the ASGI ``receive`` chain — at 50 audio
messages a second per session that hand-off was the largest cost left on the event loop
(docs/benchmarks.md, Load). Order is kept: a message goes direct only while the app is
parked in ``receive`` with nothing queued; otherwise (the app is busy or earlier messages
wait) it queues as before and the app receives it through ASGI. Binary messages, close,
ping and pong, UTF-8 and size checks stay uvicorn's and websockets'. Nothing is buffered
for a direct message, so the read-buffer rule above does not apply to it. A handler that
raises fails the connection with 1011 (logged), as an app that raises would end it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# The hook keys and interfaces live below server/, where the relay reads them; re-exported.
from ..asgi.hooks import SPLICE_EXTENSION, TAP_EXTENSION, RawSink
from .preauth import http_protocol
from .uvicorn_contract import check

DEFAULT_READ_BUFFER_BYTES = 256 * 1024
"""Message bytes a connection may hold for the app before reading pauses (~4 s of 24 kHz
PCM16 sent as base64 JSON)."""

log = logging.getLogger("rtgate.ws")

_ARMED, _TAKEN = "armed", "taken"


class Splice:
    """A connection's splice hook (see the module docstring); one per connection. It
    implements :class:`rtgate.asgi.hooks.SpliceHook`, the interface the relay uses."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: BufferedSansIOProtocol) -> None:
        self._protocol = protocol

    @property
    def armed(self) -> bool:
        return self._protocol._splice_mode == _ARMED

    def arm(self) -> bool:
        """Route the bytes after the 101 to a raw buffer. Only before ``websocket.accept``;
        returns whether the hook is armed."""
        p = self._protocol
        if p._splice_mode is not None or p.handshake_complete:
            return False
        p._splice_mode = _ARMED
        return True

    def release(self) -> None:
        """Give the connection back to uvicorn (a no-op unless armed)."""
        self._protocol._splice_release()

    def take(self, sink: RawSink) -> tuple[asyncio.Transport, bytes] | None:
        """Hand the connection to ``sink``; returns the transport and the bytes received
        since the 101, which ``sink`` must process before any later ``data_received``.

        ``None`` — the caller must then :meth:`release` — unless the hook is armed, the
        101 is written without a negotiated extension (frames could not pass verbatim),
        and the connection is still open.
        """
        return self._protocol._splice_take(sink)


class MessageTap:
    """A connection's direct text-message hook (see the module docstring); one per connection."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: BufferedSansIOProtocol) -> None:
        self._protocol = protocol

    def attach(self, on_text: Callable[[str], None]) -> None:
        """From now on, hand whole text messages to ``on_text`` while the app waits in
        ``receive``. ``on_text`` must not block; it runs inside the protocol's
        ``data_received``."""
        self._protocol._on_text = on_text

    def detach(self) -> None:
        """Every later message goes through ASGI ``receive`` again."""
        self._protocol._on_text = None


class BufferedSansIOProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` that pauses reading by buffered bytes and can be spliced; see
    the module docstring."""

    read_buffer_bytes = DEFAULT_READ_BUFFER_BYTES
    handshake_timeout_s: float = 10.0
    """Seconds from the upgrade request until the app has answered it (server/preauth.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._queued_bytes = 0
        self._splice_mode: str | None = None
        self._splice_sink: RawSink | None = None
        self._splice_early: list[bytes] = []
        self._splice_early_bytes = 0
        self._splice_paused = False
        self._on_text: Callable[[str], None] | None = None
        self._app_parked = False  # the app awaits ``receive`` on an empty queue

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self._is_utf8():
            return
        if (
            self._on_text is not None
            and self._app_parked
            and self.curr_msg_data_type == "text"
            and not self.close_sent
            and self.queue.empty()
            and self._deliver_direct()
        ):
            return
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

    def _is_utf8(self) -> bool:
        """Whether the text message's bytes are UTF-8; if not, close with 1007 as uvicorn
        does, with one log line instead of uvicorn's traceback (issue 17, defect 6: a client
        could fill the log). ASCII, nearly every JSON message, is not decoded here."""
        frames = self.frames
        if all(frame.isascii() for frame in frames):
            return True
        try:
            (frames[0] if len(frames) == 1 else b"".join(frames)).decode()
        except UnicodeDecodeError:
            self.frames = []
            log.info("closing a WebSocket (1007): a text message is not valid UTF-8")
            self.conn.send_close(1007)
            self.handle_parser_exception()
            return False
        return True

    def _deliver_direct(self) -> bool:
        """Hand the parsed text message to the tap's handler; ``False`` leaves it to the
        queue (invalid UTF-8, which uvicorn's path reports with 1007)."""
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return False
        self.frames = []
        on_text = self._on_text
        assert on_text is not None
        try:
            on_text(text)
        except Exception:
            log.exception("message handler failed; closing the connection (1011)")
            self._fail_connection(1011, "internal error")
        return True

    def _fail_connection(self, code: int, reason: str) -> None:
        """Send a close frame (when the connection is still open), tell the app, drop the
        socket: what uvicorn does when an app raises, plus the close code."""
        self._on_text = None
        self.conn.fail(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_sent = True
        self.transport.close()

    async def receive(self) -> Any:
        if self._splice_mode == _ARMED and self.handshake_complete:  # not the connect event
            self._splice_release()
        self._app_parked = self.queue.empty()
        try:
            message: Any = await super().receive()
        finally:
            self._app_parked = False
        if self.queue.empty():
            self._queued_bytes = 0
        else:
            payload = message.get("text") or message.get("bytes") or b""
            self._queued_bytes = max(0, self._queued_bytes - len(payload))
        return message

    # -- splicing (module docstring)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the app's task first runs on a later loop turn
            scope["extensions"][SPLICE_EXTENSION] = Splice(self)
            scope["extensions"][TAP_EXTENSION] = MessageTap(self)

    def data_received(self, data: bytes) -> None:
        if self._splice_mode is None or not self.handshake_complete:
            super().data_received(data)
        elif self._splice_sink is not None:
            self._splice_sink.data_received(data)
        else:
            self._splice_early.append(data)
            self._splice_early_bytes += len(data)
            if self._splice_early_bytes > self.read_buffer_bytes and not self._splice_paused:
                self._splice_paused = True
                self.transport.pause_reading()

    def _splice_release(self) -> None:
        if self._splice_mode != _ARMED:
            return
        self._splice_mode = None
        early, self._splice_early, self._splice_early_bytes = self._splice_early, [], 0
        if self.disconnected:
            return
        if early:
            super().data_received(b"".join(early))
        if self._splice_paused:
            self._splice_paused = False
            if not self.read_paused:
                self.transport.resume_reading()
        if self.handshake_complete and not self.close_sent:
            super().start_keepalive()

    def _splice_take(self, sink: RawSink) -> tuple[asyncio.Transport, bytes] | None:
        if self._splice_mode != _ARMED or not self.handshake_complete or self.disconnected:
            return None
        if self.transport.is_closing() or "Sec-WebSocket-Extensions" in self.response.headers:
            return None
        self._splice_mode = _TAKEN
        self._splice_sink = sink
        early = b"".join(self._splice_early)
        self._splice_early, self._splice_early_bytes = [], 0
        if self._splice_paused:
            self._splice_paused = False
            self.transport.resume_reading()
        return self.transport, early

    def start_keepalive(self) -> None:
        if self._splice_mode is None:  # an armed connection starts it when released
            super().start_keepalive()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._handshake_timer = self.loop.call_later(self.handshake_timeout_s,
                                                     self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.handshake_complete and not self.transport.is_closing():
            log.info("closing a WebSocket whose upgrade was not answered within %.0f s",
                     self.handshake_timeout_s)
            self.handshake_complete = self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        super().connection_lost(exc)
        if self._splice_sink is not None:
            self._splice_sink.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._splice_sink is not None:
            self._splice_sink.pause_writing()
        else:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._splice_sink is not None:
            self._splice_sink.resume_writing()
        else:
            super().resume_writing()

    def shutdown(self) -> None:
        if self._splice_sink is not None:
            self._splice_sink.shutdown()
        elif self._splice_mode == _TAKEN:
            self.transport.close()
        else:
            super().shutdown()

    async def send(self, message: Any) -> None:
        if self._splice_mode == _ARMED and message["type"] != "websocket.accept":
            self._splice_release()
        elif self._splice_mode == _TAKEN:
            raise RuntimeError("a spliced connection is written by its sink, not through ASGI")
        if message["type"] == "websocket.send" and self.handshake_complete and (
            self.transport.is_closing()
        ):
            # The socket failed or is closing: asyncio learns of the loss one loop turn
            # later (connection_lost), and every write in between logs "socket.send()
            # raised exception" — hundreds per session from a writer with a full queue.
            raise ClientDisconnected()
        await super().send(message)


def ws_protocol(
    read_buffer_bytes: int = DEFAULT_READ_BUFFER_BYTES, handshake_timeout_s: float = 10.0
) -> type[BufferedSansIOProtocol]:
    """A :class:`BufferedSansIOProtocol` class for uvicorn's ``ws=`` with these limits."""
    if read_buffer_bytes < 0:
        raise ValueError("read_buffer_bytes must be ≥ 0")
    return type(
        "BufferedSansIOProtocol",
        (BufferedSansIOProtocol,),
        {"read_buffer_bytes": read_buffer_bytes, "handshake_timeout_s": handshake_timeout_s},
    )


def uvicorn_ws_options(settings: Any) -> dict[str, Any]:
    """uvicorn ``Config`` keyword arguments for rtgate's connections (one place): the
    WebSocket protocol above and the HTTP protocol with pre-authentication deadlines.
    Raises :class:`~rtgate.server.uvicorn_contract.UvicornInternalsChanged` on a uvicorn
    without the internals those classes use."""
    check()

    return {
        "http": http_protocol(settings),
        "ws": ws_protocol(settings.websocket.ws_read_buffer_bytes, settings.preauth.ws_handshake_timeout_s),
        "ws_max_size": settings.decode.max_frame_bytes,
        "ws_ping_interval": settings.websocket.ping_interval_s,
        "ws_ping_timeout": settings.websocket.ping_timeout_s,
        # Also what lets relayed frames pass verbatim (relay/splice.py).
        "ws_per_message_deflate": False,
    }


__all__ = [
    "DEFAULT_READ_BUFFER_BYTES", "SPLICE_EXTENSION", "TAP_EXTENSION", "BufferedSansIOProtocol",
    "MessageTap", "RawSink", "Splice",
    "uvicorn_ws_options", "ws_protocol",
]

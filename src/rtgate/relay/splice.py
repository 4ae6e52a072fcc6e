"""The spliced data path of a GA relayed session: frames pass as raw bytes, both ways.

After both handshakes the relay is an RFC 6455 client towards the upstream and a server
towards the client, with no extension negotiated on either side. A client's frames are
masked with the client's own keys, which is what the upstream must receive from a client
(§5.1, §5.3); an upstream's frames are unmasked, which is what a client must receive. So
each direction's bytes are written to the other socket *verbatim*: no payload is decoded,
unmasked or re-encoded. Only frame headers are read (:class:`~.wire.FrameScanner`), to
know where frames end, plus the first :data:`~.wire.PEEK_BYTES` of each text message, to
read its ``type`` for the metrics and the answer deadline.

Contract (the endings table is :class:`~.session.RelaySession`'s, with these notes):

* Whole frames only are forwarded; an incomplete tail is held (at most one frame,
  ``max_frame_bytes``). Everything rtgate writes itself therefore lands between frames:
  a masked ``session.update`` first for an ephemeral key's bound session; keepalive pings
  both ways (``relay_ping_*`` towards the upstream, ``ping_*`` towards the client), whose
  pongs are taken out of the streams; and, when rtgate ends the session, an ``error``
  event (only between messages, §5.4) and a close.
* Control frames pass end to end: the upstream's close (code and reason) reaches the
  client as sent; the client's close reaches the upstream as sent (a client that
  disconnects without one gets ``1000 client disconnected`` sent upstream for it).
* Back-pressure: when the client's socket buffer is full (the transport's
  ``pause_writing``), reading from the upstream pauses and the ``send_deadline_s`` timer
  runs; past it the session ends as ``client_not_reading`` (1008, upstream closed 1000,
  the connection dropped if its buffer does not drain within ``close_timeout_s``). Neither
  the answer deadline nor the keepalive blames the upstream while the client is the one
  not reading. A full upstream buffer pauses reading from the client.
* A client frame over ``max_frame_bytes`` closes the client with 1009, as uvicorn would,
  before its payload is buffered; a frame with the wrong mask bit closes with 1002.
* Metrics: data messages by type and payload bytes are counted per session and added to
  ``rtgate_relay_events_total`` / ``rtgate_relay_bytes_total`` every
  :data:`METRICS_FLUSH_S` and at the end; ``rtgate_relay_added_latency_seconds`` gets one
  observation per :data:`LATENCY_SAMPLE` socket reads (read → its whole frames written to
  the other socket).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..core.ids import IdFactory
from ..metrics import event_type_label
from ..protocol.errors import SERVER_ERROR, RealtimeError, error_event
from .frames import frame_type
from .metrics import RelayMetrics
from .upstream import RelayLimits
from .wire import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PEEK_BYTES,
    FrameError,
    FrameScanner,
    ScannedFrame,
    close_payload,
    encode_frame,
    parse_close,
    payload_of,
    peek_type,
)

log = logging.getLogger("rtgate.relay")

TO_UPSTREAM = "client_to_upstream"
TO_CLIENT = "upstream_to_client"
_NO_ANSWER = "input_audio_buffer.append"
_PING_PREFIX = b"rtgate-"
METRICS_FLUSH_S = 1.0
"""Seconds between flushes of a session's event and byte counts into the registry."""
MAX_PENDING_TYPES = 64
"""Distinct event types a session counts before it flushes early."""
LATENCY_SAMPLE = 4
"""One socket read in this many is timed into ``rtgate_relay_added_latency_seconds`` (an
observation cost as much as a tenth of the rest of a frame's handling)."""
_UNSENDABLE_CLOSE_CODES = frozenset({1005, 1006, 1015})


class _Sink:
    """A :class:`~rtgate.asgi.hooks.RawSink` whose methods are the relay's own
    bound methods (no extra call per chunk)."""

    __slots__ = ("connection_lost", "data_received", "pause_writing", "resume_writing", "shutdown")

    def __init__(self, data: Callable[[bytes], None], lost: Callable[[Exception | None], None],
                 pause: Callable[[], None], resume: Callable[[], None], shutdown: Callable[[], None]) -> None:
        self.data_received = data
        self.connection_lost = lost
        self.pause_writing = pause
        self.resume_writing = resume
        self.shutdown = shutdown


def _error_frame(error: RealtimeError) -> bytes:
    return encode_frame(OP_TEXT, orjson.dumps(error_event(error, IdFactory().event())), mask=False)


def _message_type(whole: bytes, frame: ScannedFrame) -> str | None:
    kind = peek_type(payload_of(whole, frame, PEEK_BYTES))
    if kind is None and frame[3] & 0x80:  # a whole message whose type is not up front
        kind = frame_type(payload_of(whole, frame).decode(errors="replace"))
    return kind


class SplicedRelay:
    """Joins a taken client transport and a raw upstream transport (module docstring).

    Build it, hand :attr:`client_sink` / :attr:`upstream_sink` to the two connections,
    call :meth:`start` with the bytes each had already received, then await :meth:`wait`,
    which returns the session's :class:`~.session.Ending` once both connections are closed.
    ``frames`` and ``bytes`` count data messages and payload bytes per direction.
    """

    def __init__(self, *, name: str, relay_id: str, limits: RelayLimits, metrics: RelayMetrics | None,
                 frames: dict[str, int], bytes_: dict[str, int], ending_factory: Any) -> None:
        self._name = name
        self._id = relay_id
        self._limits = limits
        self._m = metrics
        self.frames = frames
        self.bytes = bytes_
        self._Ending = ending_factory
        self._loop = asyncio.get_running_loop()
        self._up = FrameScanner(masked=True, max_payload=limits.max_frame_bytes)
        self._down = FrameScanner(masked=False, max_payload=limits.max_frame_bytes)
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._client_open = self._upstream_open = True
        self._forwarding = True
        self._ending: Any = None
        self._done: asyncio.Future[Any] = self._loop.create_future()
        self._client_close: tuple[int, str] | None = None  # the client's close frame, passed up
        self._upstream_close: tuple[int, str] | None = None  # the upstream's, passed down
        self._upstream_first = False  # the upstream began the closing handshake
        self._close_to_upstream = False
        self._close_to_client = False
        self._down_in_message = False  # the client is inside a fragmented upstream message
        self._client_blocked = False  # the client's write buffer is full
        self._upstream_blocked = False
        self._owed = 1  # the upstream owes session.created
        self._quiet_since = self._loop.time()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._up_ping: bytes | None = None
        self._client_ping: bytes | None = None
        self._reads = 0  # socket reads with whole frames, both directions
        # (direction, event type as sent) → messages not yet in the registry; labelled at the
        # flush, once per type rather than once per message
        self._counts: dict[tuple[str, str | None], int] = {}
        self._flushed = {TO_UPSTREAM: 0, TO_CLIENT: 0}  # bytes already in the registry
        self.client_sink = _Sink(self._from_client, self._client_lost, self._client_paused,
                                 self._client_resumed, self._shutdown)
        self.upstream_sink = _Sink(self._from_upstream, self._upstream_lost, self._upstream_paused,
                                   self._upstream_resumed, self._shutdown)

    # ------------------------------------------------------------------ life cycle

    def start(self, client: asyncio.Transport, client_early: bytes, upstream: asyncio.Transport,
              upstream_early: bytes, bound_session: Mapping[str, Any] | None = None) -> None:
        """Begin relaying; ``*_early``: bytes each side sent before its sink was attached."""
        self._client, self._upstream = client, upstream
        limits = self._limits
        self._timer("deadline", limits.answer_deadline_s, self._check_deadline)
        if bound_session:
            session = {k: v for k, v in bound_session.items() if k != "model"}
            event = orjson.dumps({"type": "session.update", "session": session})
            self._arm()
            upstream.write(encode_frame(OP_TEXT, event, mask=True))
        if limits.ping_interval_s > 0:
            self._timer("up_ping", limits.ping_interval_s, self._ping_upstream)
        if limits.client_ping_interval_s > 0:
            self._timer("client_ping", limits.client_ping_interval_s, self._ping_client)
        if self._m is not None:
            self._timer("flush", METRICS_FLUSH_S, self._flush_metrics)
        if upstream_early:
            self._from_upstream(upstream_early)
        if client_early:
            self._from_client(client_early)

    async def wait(self) -> Any:
        """The :class:`~.session.Ending`, once both connections are closed."""
        try:
            return await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._abort_all()
            raise

    def _timer(self, key: str, delay: float, callback: Callable[[], None]) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = self._loop.call_later(delay, callback)

    def _cancel(self, *keys: str) -> None:
        for key in keys:
            handle = self._timers.pop(key, None)
            if handle is not None:
                handle.cancel()

    def _check_done(self) -> None:
        if not self._client_open and not self._upstream_open and not self._done.done():
            for handle in self._timers.values():
                handle.cancel()
            self._timers.clear()
            self._flush_metrics()
            self._done.set_result(self._ending)

    def _flush_metrics(self) -> None:
        """Add the counts gathered since the last flush to the registry, every
        :data:`METRICS_FLUSH_S` and at the end (two registry updates per frame cost about
        1.5 µs, half as much as the rest of the relay's own work on a frame)."""
        m = self._m
        if m is None:
            return
        counts, self._counts = self._counts, {}
        for (direction, kind), count in counts.items():
            m.events.inc(self._name, direction, event_type_label(kind), amount=count)
        for direction, total in self.bytes.items():
            if total > self._flushed[direction]:
                m.bytes.inc(self._name, direction, amount=total - self._flushed[direction])
                self._flushed[direction] = total
        if not self._done.done() and (self._client_open or self._upstream_open):
            self._timer("flush", METRICS_FLUSH_S, self._flush_metrics)

    def _abort_all(self) -> None:
        for transport in (self._client, self._upstream):
            if transport is not None:
                transport.abort()

    # ------------------------------------------------------------------ client → upstream

    def _from_client(self, data: bytes) -> None:
        try:
            whole, frames = self._up.feed(data)
        except FrameError as exc:
            if self._forwarding:
                self._end(self._Ending(exc.close_code, exc.reason, by_client=True), None,
                          exc.close_code, exc.reason, upstream_reason="client disconnected")
            elif self._client is not None:
                self._client.abort()
            return
        if not frames:
            return
        if not self._forwarding:  # rtgate ended the session: only the client's close matters
            if any(f[3] & 0x0F == OP_CLOSE for f in frames) and self._client is not None:
                self._client.close()
            return
        m = self._m
        self._reads += 1
        timed = m is not None and not self._reads % LATENCY_SAMPLE
        received = time.perf_counter_ns() if timed else 0
        counts = self._counts
        messages = size = 0
        cut: list[tuple[int, int]] | None = None
        for frame in frames:
            b0 = frame[3]
            op = b0 & 0x0F
            if 0 < op < 3:  # OP_TEXT or OP_BINARY (no tuple built per frame)
                messages += 1
                size += frame[2]
                kind = _message_type(whole, frame) if op == OP_TEXT else None
                if kind != _NO_ANSWER:
                    self._arm()
                key = (TO_UPSTREAM, kind)
                counts[key] = counts.get(key, 0) + 1
            elif op == OP_CONT:
                size += frame[2]
            elif op == OP_PONG:
                if self._client_ping is not None and payload_of(whole, frame) == self._client_ping:
                    self._client_ping = None
                    self._cancel("client_pong")
                    self._timer("client_ping", self._limits.client_ping_interval_s, self._ping_client)
                    cut = (cut or []) + [(frame[0], frame[0] + frame[1] + frame[2])]
            elif op == OP_CLOSE:
                self._client_close = parse_close(payload_of(whole, frame))
                self._close_to_upstream = True
                # Nothing may follow a close (RFC 6455 §5.5.1); no answer is owed any more.
                self._cancel("deadline", "up_ping", "up_pong", "client_ping", "client_pong")
                if self._upstream_close is None:  # the client begins the closing handshake
                    self._timer("linger", 2 * self._limits.close_timeout_s, self._abort_all)
        self.frames[TO_UPSTREAM] += messages
        self.bytes[TO_UPSTREAM] += size
        if len(counts) > MAX_PENDING_TYPES:  # a client sending ever new types: bounded memory
            self._flush_metrics()
        upstream = self._upstream
        if upstream is not None and self._upstream_open:
            _write(upstream, whole, cut)
        if timed:
            assert m is not None
            m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, self._name, TO_UPSTREAM)

    def _arm(self) -> None:
        """A client event that needs an answer went upstream (see RelaySession._answered)."""
        self._owed += 1
        if "deadline" not in self._timers and not self._client_blocked and self._forwarding:
            self._quiet_since = self._loop.time()
            self._timer("deadline", self._limits.answer_deadline_s, self._check_deadline)

    # ------------------------------------------------------------------ upstream → client

    def _from_upstream(self, data: bytes) -> None:
        try:
            whole, frames = self._down.feed(data)
        except FrameError as exc:
            if self._forwarding:
                self._fault(RealtimeError(
                    f"The relay upstream '{self._name}' broke the WebSocket protocol ({exc.reason}).",
                    "upstream_connection_lost", type=SERVER_ERROR), 1011,
                    upstream_code=exc.close_code, upstream_reason=exc.reason)
            elif self._upstream is not None:
                self._upstream.abort()
            return
        if not frames:
            return
        if not self._forwarding:
            if any(f[3] & 0x0F == OP_CLOSE for f in frames) and self._upstream is not None:
                self._upstream.close()
            return
        m = self._m
        self._reads += 1
        timed = m is not None and not self._reads % LATENCY_SAMPLE
        received = time.perf_counter_ns() if timed else 0
        counts = self._counts
        messages = size = 0
        cut: list[tuple[int, int]] | None = None
        for frame in frames:
            b0 = frame[3]
            op = b0 & 0x0F
            if 0 < op < 3:  # OP_TEXT or OP_BINARY
                messages += 1
                size += frame[2]
                self._down_in_message = not b0 & 0x80
                if m is not None:
                    begin = frame[0] + frame[1]
                    key = (TO_CLIENT, peek_type(whole[begin : begin + PEEK_BYTES]))
                    counts[key] = counts.get(key, 0) + 1
            elif op == OP_CONT:
                size += frame[2]
                if b0 & 0x80:
                    self._down_in_message = False
            elif op == OP_PONG:
                if self._up_ping is not None and payload_of(whole, frame) == self._up_ping:
                    self._up_ping = None
                    self._cancel("up_pong")
                    self._timer("up_ping", self._limits.ping_interval_s, self._ping_upstream)
                    cut = (cut or []) + [(frame[0], frame[0] + frame[1] + frame[2])]
            elif op == OP_CLOSE:
                self._upstream_close = parse_close(payload_of(whole, frame))
                self._upstream_first = self._client_close is None
                self._close_to_client = True
                self._cancel("deadline", "up_ping", "up_pong", "client_ping", "client_pong")
                if self._client_close is None:
                    self._timer("linger", 2 * self._limits.close_timeout_s, self._abort_all)
        if messages:
            # Every upstream message pays one owed answer and is progress (RelaySession._answered).
            self._owed = max(0, self._owed - messages)
            self._quiet_since = self._loop.time()
        self.frames[TO_CLIENT] += messages
        self.bytes[TO_CLIENT] += size
        if len(counts) > MAX_PENDING_TYPES:
            self._flush_metrics()
        client = self._client
        if client is not None and self._client_open:
            _write(client, whole, cut)
        if timed:
            assert m is not None
            m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, self._name, TO_CLIENT)

    # ------------------------------------------------------------------ deadlines and keepalives

    def _check_deadline(self) -> None:
        self._timers.pop("deadline", None)
        if not self._owed or self._client_blocked or not self._forwarding or self._client_close:
            return
        due = self._quiet_since + self._limits.answer_deadline_s
        if self._loop.time() + 0.001 < due:  # progress since: wait for the rest
            self._timers["deadline"] = self._loop.call_at(due, self._check_deadline)
            return
        self._fault(RealtimeError(
            f"The relay upstream '{self._name}' stalled: no event within "
            f"{self._limits.answer_deadline_s:g} s of a client event that needs an answer.",
            "upstream_timeout", type=SERVER_ERROR), 1011)

    def _ping_upstream(self) -> None:
        self._timers.pop("up_ping", None)
        if not self._forwarding or self._upstream is None or self._close_to_upstream:
            return
        self._up_ping = _PING_PREFIX + os.urandom(4)
        self._upstream.write(encode_frame(OP_PING, self._up_ping, mask=True))
        self._timer("up_pong", self._limits.ping_timeout_s, self._upstream_pong_missed)

    def _upstream_pong_missed(self) -> None:
        self._timers.pop("up_pong", None)
        if self._client_blocked:  # its pong may be waiting unread behind the client's data
            self._timer("up_pong", self._limits.ping_timeout_s, self._upstream_pong_missed)
            return
        self._fault(RealtimeError(
            f"The relay upstream '{self._name}' stopped answering keepalive pings "
            f"({self._limits.ping_timeout_s:g} s).", "upstream_timeout", type=SERVER_ERROR), 1011,
            upstream_code=1011, upstream_reason="keepalive ping timeout")

    def _ping_client(self) -> None:
        self._timers.pop("client_ping", None)
        if not self._forwarding or self._client is None or self._close_to_client:
            return
        self._client_ping = _PING_PREFIX + os.urandom(4)
        self._client.write(encode_frame(OP_PING, self._client_ping, mask=False))
        self._timer("client_pong", self._limits.client_ping_timeout_s, self._client_pong_missed)

    def _client_pong_missed(self) -> None:
        """The client stopped answering pings: dropped, as uvicorn drops it (1011)."""
        self._timers.pop("client_pong", None)
        if self._client_blocked:  # the send deadline decides about a client that is not reading
            self._timer("client_pong", self._limits.client_ping_timeout_s, self._client_pong_missed)
            return
        if self._client is not None and self._client_open:
            self._client.write(encode_frame(OP_CLOSE, close_payload(1011, "keepalive ping timeout"),
                                            mask=False))
            self._client.abort()

    # ------------------------------------------------------------------ flow control

    def _client_paused(self) -> None:
        self._client_blocked = True
        if self._upstream is not None and self._upstream_open:
            self._upstream.pause_reading()
        if self._forwarding:
            self._timer("send", self._limits.send_deadline_s, self._not_reading)

    def _client_resumed(self) -> None:
        self._client_blocked = False
        self._cancel("send")
        if self._upstream is not None and self._upstream_open and self._forwarding:
            self._upstream.resume_reading()
            self._quiet_since = self._loop.time()
            if self._owed and "deadline" not in self._timers:
                self._timer("deadline", self._limits.answer_deadline_s, self._check_deadline)

    def _not_reading(self) -> None:
        self._timers.pop("send", None)
        if not self._forwarding:
            return
        from .session import NOT_READING_REASON  # session imports this module

        ending = self._Ending.not_reading(self._limits.send_deadline_s)
        self._end(ending, None, 1008, NOT_READING_REASON, upstream_reason="client not reading", stuck=True)

    def _upstream_paused(self) -> None:
        self._upstream_blocked = True
        if self._client is not None and self._client_open:
            self._client.pause_reading()

    def _upstream_resumed(self) -> None:
        self._upstream_blocked = False
        if self._client is not None and self._client_open:
            self._client.resume_reading()

    # ------------------------------------------------------------------ endings

    def _shutdown(self) -> None:
        if self._forwarding:
            self._end(self._Ending(1012, "server shutting down"), None, 1012, "server shutting down",
                      upstream_code=1001, upstream_reason="going away")

    def shut_down(self, error: RealtimeError) -> None:
        """The server's drain ends the session: ``error`` and close 1012 to the client, at a
        frame boundary, and 1001 (Going Away) to the upstream."""
        self._fault(error, 1012, upstream_code=1001, upstream_reason="going away")

    def _fault(self, error: RealtimeError, close_code: int, *, upstream_code: int = 1000,
               upstream_reason: str = "relay ended") -> None:
        ending = self._Ending.fault(error, close_code)
        self._end(ending, error, close_code, ending.reason, upstream_code=upstream_code,
                  upstream_reason=upstream_reason)

    def _end(self, ending: Any, error: RealtimeError | None, close_code: int, reason: str, *,
             upstream_code: int = 1000, upstream_reason: str = "relay ended", stuck: bool = False) -> None:
        """rtgate ends the session: stop forwarding, close both sides at a frame boundary."""
        if not self._forwarding:
            return
        self._forwarding = False
        if self._ending is None:
            self._ending = ending
        self._cancel("deadline", "up_ping", "up_pong", "client_ping", "client_pong", "send", "linger")
        limit = self._limits.close_timeout_s
        client, upstream = self._client, self._upstream
        if client is not None and self._client_open:
            if not self._close_to_client:
                if error is not None and not stuck and not self._down_in_message:
                    client.write(_error_frame(error))
                client.write(encode_frame(OP_CLOSE, close_payload(close_code, reason[:120]), mask=False))
                self._close_to_client = True
            if self._upstream_blocked:
                client.resume_reading()  # to see its close reply
            self._timers["client_linger"] = self._loop.call_later(limit, self._drop_client)
        if upstream is not None and self._upstream_open:
            if not self._close_to_upstream:
                upstream.write(encode_frame(OP_CLOSE, close_payload(upstream_code, upstream_reason),
                                            mask=True))
                self._close_to_upstream = True
            if self._client_blocked:
                upstream.resume_reading()  # to see its close reply; the rest is discarded
            self._timers["upstream_linger"] = self._loop.call_later(limit, upstream.abort)

    def _drop_client(self) -> None:
        """The client did not answer rtgate's close in time: closed if everything it was sent
        has left the buffer, else dropped (a client that stopped reading never drains it)."""
        self._timers.pop("client_linger", None)
        client = self._client
        if client is None or not self._client_open:
            return
        if client.get_write_buffer_size() == 0:
            client.close()
        else:
            client.abort()

    def _client_lost(self, exc: Exception | None) -> None:
        self._client_open = False
        self._cancel("client_ping", "client_pong", "send", "client_linger")
        if self._ending is None:
            self._ending = self._natural_ending()
        upstream = self._upstream
        if upstream is not None and self._upstream_open:
            if self._forwarding and not self._close_to_upstream:
                code, reason = (self._upstream_close if self._upstream_first else None) or (
                    1000, "client disconnected")
                code = 1000 if code in _UNSENDABLE_CLOSE_CODES else code
                upstream.write(encode_frame(OP_CLOSE, close_payload(code, reason), mask=True))
                self._close_to_upstream = True
            self._forwarding = False
            if self._client_blocked:
                upstream.resume_reading()
            self._cancel("deadline", "up_ping", "up_pong")
            if "upstream_linger" not in self._timers:
                self._timers["upstream_linger"] = self._loop.call_later(
                    self._limits.close_timeout_s, upstream.abort)
        self._check_done()

    def _upstream_lost(self, exc: Exception | None) -> None:
        self._upstream_open = False
        self._cancel("deadline", "up_ping", "up_pong", "upstream_linger")
        if self._forwarding and self._upstream_close is None and self._client_close is None:
            self._fault(RealtimeError(
                f"The connection to the relay upstream '{self._name}' was lost mid-session "
                "(reset or closed without a close frame).", "upstream_connection_lost",
                type=SERVER_ERROR), 1011)
        elif self._ending is None:
            self._ending = self._natural_ending()
        client = self._client
        if self._forwarding and client is not None and self._client_open:
            # The closing handshake passed through: the client has the upstream's close (or
            # sent its own); close once it has answered, or after close_timeout_s.
            self._forwarding = False
            if self._client_close is not None:
                client.close()
            else:
                self._timers["client_linger"] = self._loop.call_later(
                    self._limits.close_timeout_s, self._drop_client)
        self._check_done()

    def _natural_ending(self) -> Any:
        """A closing handshake that passed through: the upstream's close code when the
        upstream began it, else the client's leaving."""
        if self._upstream_close is not None and self._upstream_first:
            return self._passed_through(self._upstream_close)
        return self._Ending(1000, "client disconnected", by_client=True)

    def _passed_through(self, close: tuple[int, str]) -> Any:
        code, reason = close
        if code == 1005:
            code = 1000
        if code in _UNSENDABLE_CLOSE_CODES:
            return self._Ending.fault(RealtimeError(
                f"The connection to the relay upstream '{self._name}' was lost mid-session "
                "(reset or closed without a close frame).", "upstream_connection_lost",
                type=SERVER_ERROR), 1011)
        return self._Ending(code, reason)


def _write(transport: asyncio.Transport, whole: bytes, cut: list[tuple[int, int]] | None) -> None:
    """Write ``whole`` less the ``cut`` byte ranges (rtgate's own pongs), in order."""
    if cut is None:
        transport.write(whole)
        return
    at = 0
    for start, end in cut:
        if start > at:
            transport.write(whole[at:start])
        at = end
    if at < len(whole):
        transport.write(whole[at:])


__all__ = ["SplicedRelay"]

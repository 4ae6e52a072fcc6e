"""The spliced data path of a GA relayed session: frames pass as raw bytes, both ways.

After both handshakes the relay is an RFC 6455 client towards the upstream and a server
towards the client, with no extension negotiated on either side. A client's frames are
masked with the client's own keys, which is what the upstream must receive from a client
(§5.1, §5.3); an upstream's frames are unmasked, which is what a client must receive. So
each direction's bytes are written to the other socket *verbatim*: no payload is decoded,
unmasked or re-encoded. Only frame headers are read (:class:`~.wire.FrameScanner`), to
know where frames end, plus the first :data:`~.wire.PEEK_BYTES` of each text message, to
read its ``type`` for the metrics and the answer deadline.

Contract (the endings table is :class:`~.session.RelaySession`'s, with these notes; the
answer deadline, keepalive verdicts and endings are :class:`~.policy.RelayPolicy`'s, as on
the parsed path):

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
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..core.ids import IdFactory
from ..metrics import event_type_label
from ..protocol.errors import RealtimeError, error_event
from .frames import frame_type
from .metrics import RelayMetrics
from .policy import (
    KEEPALIVE_REASON,
    NO_ANSWER,
    TO_CLIENT,
    TO_UPSTREAM,
    UNSENDABLE_CLOSE_CODES,
    Ending,
    Keepalive,
    RelayPolicy,
)
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

_PING_PREFIX = b"rtgate-"
METRICS_FLUSH_S = 1.0
"""Seconds between flushes of a session's event and byte counts into the registry."""
MAX_PENDING_TYPES = 64
"""Distinct event types a session counts before it flushes early."""
LATENCY_SAMPLE = 4
"""One socket read in this many is timed into ``rtgate_relay_added_latency_seconds`` (an
observation cost as much as a tenth of the rest of a frame's handling)."""
_WATCH_TIMERS = ("deadline", "up_ping", "up_pong", "client_ping", "client_pong")
"""The answer deadline and keepalive timers, which a close frame stops: nothing may follow
a close (RFC 6455 §5.5.1), and nothing is owed after one."""


class _Sink:
    """A :class:`~rtgate.asgi.hooks.RawSink` whose methods are the relay's own
    (bound methods, or a partial of one: no extra Python call per chunk)."""

    __slots__ = ("connection_lost", "data_received", "pause_writing", "resume_writing", "shutdown")

    def __init__(self, data: Callable[[bytes], None], lost: Callable[[Exception | None], None],
                 pause: Callable[[], None], resume: Callable[[], None], shutdown: Callable[[], None]) -> None:
        self.data_received = data
        self.connection_lost = lost
        self.pause_writing = pause
        self.resume_writing = resume
        self.shutdown = shutdown


class _Leg:
    """One direction of the relay: what the source sends, and rtgate's pings to the source."""

    __slots__ = ("close", "direction", "from_client", "ping", "ping_key", "pong_key", "scanner",
                 "sent_close")

    def __init__(self, *, from_client: bool, max_payload: int) -> None:
        self.from_client = from_client
        self.direction = TO_UPSTREAM if from_client else TO_CLIENT
        # A client masks its frames; an upstream (a server) does not.
        self.scanner = FrameScanner(masked=from_client, max_payload=max_payload)
        self.close: tuple[int, str] | None = None  # the source's close frame (passed on)
        self.sent_close = False  # a close frame went to this leg's target
        self.ping: bytes | None = None  # rtgate's ping to the source, awaiting its pong
        side = "client" if from_client else "up"
        self.ping_key, self.pong_key = f"{side}_ping", f"{side}_pong"


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
    which returns the session's :class:`~.policy.Ending` once both connections are closed.
    ``frames`` and ``bytes`` count data messages and payload bytes per direction. The
    deadlines, keepalive verdicts and endings are the :class:`~.policy.RelayPolicy`'s; this
    class keeps the timers and the sockets.
    """

    def __init__(self, *, name: str, relay_id: str, limits: RelayLimits, metrics: RelayMetrics | None,
                 frames: dict[str, int], bytes_: dict[str, int]) -> None:
        self._name = name
        self._id = relay_id
        self._limits = limits
        self._m = metrics
        self.frames = frames
        self.bytes = bytes_
        self._loop = asyncio.get_running_loop()
        self._policy = RelayPolicy(name, limits, self._loop.time())
        self._c2u = _Leg(from_client=True, max_payload=limits.max_frame_bytes)
        self._u2c = _Leg(from_client=False, max_payload=limits.max_frame_bytes)
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._client_open = self._upstream_open = True
        self._forwarding = True
        self._ending: Ending | None = None
        self._done: asyncio.Future[Ending | None] = self._loop.create_future()
        self._upstream_first = False  # the upstream began the closing handshake
        self._down_in_message = False  # the client is inside a fragmented upstream message
        self._upstream_blocked = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._reads = 0  # socket reads with whole frames, both directions
        # (direction, event type as sent) → messages not yet in the registry; labelled at the
        # flush, once per type rather than once per message
        self._counts: dict[tuple[str, str | None], int] = {}
        self._flushed = {TO_UPSTREAM: 0, TO_CLIENT: 0}  # bytes already in the registry
        self.client_sink = _Sink(functools.partial(self._forward, self._c2u), self._client_lost,
                                 self._client_paused, self._client_resumed, self._shutdown)
        self.upstream_sink = _Sink(functools.partial(self._forward, self._u2c), self._upstream_lost,
                                   self._upstream_paused, self._upstream_resumed, self._shutdown)

    # ------------------------------------------------------------------ life cycle

    def start(self, client: asyncio.Transport, client_early: bytes, upstream: asyncio.Transport,
              upstream_early: bytes, bound_session: Mapping[str, Any] | None = None) -> None:
        """Begin relaying; ``*_early``: bytes each side sent before its sink was attached."""
        self._client, self._upstream = client, upstream
        self._watch_answer()
        if bound_session:
            session = {k: v for k, v in bound_session.items() if k != "model"}
            event = orjson.dumps({"type": "session.update", "session": session})
            self._requested()
            upstream.write(encode_frame(OP_TEXT, event, mask=True))
        for leg in (self._u2c, self._c2u):
            interval = self._policy.ping_interval(client=leg.from_client)
            if interval > 0:
                self._timer(leg.ping_key, interval, self._ping, leg)
        if self._m is not None:
            self._timer("flush", METRICS_FLUSH_S, self._flush_metrics)
        if upstream_early:
            self._forward(self._u2c, upstream_early)
        if client_early:
            self._forward(self._c2u, client_early)

    async def wait(self) -> Ending:
        """The :class:`~.policy.Ending`, once both connections are closed."""
        try:
            ending = await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._abort_all()
            raise
        assert ending is not None  # every path to both connections closed records one
        return ending

    def _timer(self, key: str, delay: float, callback: Callable[..., None], *args: Any) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = self._loop.call_later(delay, callback, *args)

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

    # ------------------------------------------------------------------ forwarding (both ways)

    def _forward(self, leg: _Leg, data: bytes) -> None:
        """Bytes read from ``leg``'s source: its whole frames go to the other socket as they
        are, less rtgate's own pongs; the policy hears of requests, answers and closes."""
        from_client = leg.from_client
        try:
            whole, frames = leg.scanner.feed(data)
        except FrameError as exc:
            if self._forwarding:
                self._end(self._policy.protocol_error(client=from_client, close_code=exc.close_code,
                                                      reason=exc.reason))
            elif (source := self._source(leg)) is not None:
                source.abort()
            return
        if not frames:
            return
        if not self._forwarding:  # rtgate ended the session: only the source's close matters
            if any(f[3] & 0x0F == OP_CLOSE for f in frames) and (source := self._source(leg)) is not None:
                source.close()
            return
        m = self._m
        self._reads += 1
        timed = m is not None and not self._reads % LATENCY_SAMPLE
        received = time.perf_counter_ns() if timed else 0
        counts = self._counts
        direction = leg.direction
        messages = size = 0
        cut: list[tuple[int, int]] | None = None
        for frame in frames:
            b0 = frame[3]
            op = b0 & 0x0F
            if 0 < op < 3:  # OP_TEXT or OP_BINARY (no tuple built per frame)
                messages += 1
                size += frame[2]
                if from_client:  # every client type is read: it decides the answer deadline
                    kind = _message_type(whole, frame) if op == OP_TEXT else None
                    if kind != NO_ANSWER:
                        self._requested()
                else:
                    self._down_in_message = not b0 & 0x80
                    if m is None:
                        continue  # an upstream type only feeds the metrics
                    begin = frame[0] + frame[1]
                    kind = peek_type(whole[begin : begin + PEEK_BYTES])
                key = (direction, kind)
                counts[key] = counts.get(key, 0) + 1
            elif op == OP_CONT:
                size += frame[2]
                if not from_client and b0 & 0x80:
                    self._down_in_message = False
            elif op == OP_PONG:
                if leg.ping is not None and payload_of(whole, frame) == leg.ping:
                    leg.ping = None
                    self._cancel(leg.pong_key)
                    self._timer(leg.ping_key, self._policy.ping_interval(client=from_client), self._ping, leg)
                    cut = (cut or []) + [(frame[0], frame[0] + frame[1] + frame[2])]
            elif op == OP_CLOSE:
                leg.close = parse_close(payload_of(whole, frame))
                leg.sent_close = True
                other = self._u2c if from_client else self._c2u
                if not from_client:
                    self._upstream_first = other.close is None
                self._policy.close_seen()
                self._cancel(*_WATCH_TIMERS)
                if other.close is None:  # this side begins the closing handshake
                    self._timer("linger", 2 * self._limits.close_timeout_s, self._abort_all)
        if messages and not from_client:
            self._policy.answered(messages, self._loop.time())
        self.frames[direction] += messages
        self.bytes[direction] += size
        if len(counts) > MAX_PENDING_TYPES:  # a client sending ever new types: bounded memory
            self._flush_metrics()
        if from_client:
            if self._upstream_open:
                _write(self._upstream, whole, cut)
        elif self._client_open:
            _write(self._client, whole, cut)
        if timed:
            assert m is not None
            m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, self._name, direction)

    def _source(self, leg: _Leg) -> asyncio.Transport | None:
        return self._client if leg.from_client else self._upstream

    # ------------------------------------------------------------------ deadlines and keepalives

    def _requested(self) -> None:
        """A client event that needs an answer went upstream."""
        self._policy.requested(self._loop.time())
        if self._forwarding:
            self._watch_answer()

    def _watch_answer(self) -> None:
        """Arm the deadline timer for the policy's due time unless one is armed: progress only
        moves the due time later, so an armed timer fires early at worst and re-arms."""
        if "deadline" not in self._timers:
            due = self._policy.answer_due()
            if due is not None:
                self._timers["deadline"] = self._loop.call_at(due, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timers.pop("deadline", None)
        if not self._forwarding:
            return
        ending = self._policy.check_answer(self._loop.time())
        if ending is not None:
            self._end(ending)
        else:
            self._watch_answer()

    def _ping(self, leg: _Leg) -> None:
        """Ping ``leg``'s source; its pong must come within the policy's pong timeout."""
        self._timers.pop(leg.ping_key, None)
        source = self._source(leg)
        closed = (self._u2c if leg.from_client else self._c2u).sent_close  # a close went to it
        if not self._forwarding or source is None or closed:
            return
        leg.ping = _PING_PREFIX + os.urandom(4)
        source.write(encode_frame(OP_PING, leg.ping, mask=not leg.from_client))
        self._timer(leg.pong_key, self._policy.pong_timeout(client=leg.from_client), self._pong_missed, leg)

    def _pong_missed(self, leg: _Leg) -> None:
        self._timers.pop(leg.pong_key, None)
        verdict = self._policy.pong_missed(client=leg.from_client)
        if verdict is Keepalive.WAIT:
            self._timer(leg.pong_key, self._policy.pong_timeout(client=leg.from_client),
                        self._pong_missed, leg)
        elif verdict is Keepalive.DROP_CLIENT:  # as uvicorn drops a client (1011)
            if self._client is not None and self._client_open:
                self._client.write(encode_frame(OP_CLOSE, close_payload(1011, KEEPALIVE_REASON), mask=False))
                self._client.abort()
        else:
            self._end(verdict)

    # ------------------------------------------------------------------ flow control

    def _client_paused(self) -> None:
        self._policy.client_blocked()
        if self._upstream is not None and self._upstream_open:
            self._upstream.pause_reading()
        if self._forwarding:
            self._timer("send", self._limits.send_deadline_s, self._not_reading)

    def _client_resumed(self) -> None:
        self._policy.client_unblocked(self._loop.time())
        self._cancel("send")
        if self._upstream is not None and self._upstream_open and self._forwarding:
            self._upstream.resume_reading()
            self._watch_answer()

    def _not_reading(self) -> None:
        self._timers.pop("send", None)
        if self._forwarding:
            self._end(self._policy.not_reading())

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
            self._end(self._policy.server_closing())

    def shut_down(self, error: RealtimeError) -> None:
        """The server's drain ends the session: ``error`` and close 1012 to the client, at a
        frame boundary, and 1001 (Going Away) to the upstream."""
        self._end(self._policy.shut_down(error))

    def _end(self, ending: Ending) -> None:
        """rtgate ends the session: stop forwarding, close both sides at a frame boundary
        (the client: ``ending``'s error event unless it is not reading, then its close)."""
        if not self._forwarding:
            return
        self._forwarding = False
        if self._ending is None:
            self._ending = ending
        self._cancel(*_WATCH_TIMERS, "send", "linger")
        limit = self._limits.close_timeout_s
        client, upstream = self._client, self._upstream
        if client is not None and self._client_open:
            if not self._u2c.sent_close:
                if ending.error is not None and not ending.client_stuck and not self._down_in_message:
                    client.write(_error_frame(ending.error))
                client.write(encode_frame(OP_CLOSE, close_payload(ending.close_code, ending.reason[:120]),
                                          mask=False))
                self._u2c.sent_close = True
            if self._upstream_blocked:
                client.resume_reading()  # to see its close reply
            self._timers["client_linger"] = self._loop.call_later(limit, self._drop_client)
        if upstream is not None and self._upstream_open:
            if not self._c2u.sent_close:
                upstream.write(encode_frame(
                    OP_CLOSE, close_payload(ending.upstream_code, ending.upstream_reason), mask=True))
                self._c2u.sent_close = True
            if self._policy.waiting_on_client:
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
            if self._forwarding and not self._c2u.sent_close:
                code, reason = (self._u2c.close if self._upstream_first else None) or (
                    1000, "client disconnected")
                code = 1000 if code in UNSENDABLE_CLOSE_CODES else code
                upstream.write(encode_frame(OP_CLOSE, close_payload(code, reason), mask=True))
                self._c2u.sent_close = True
            self._forwarding = False
            if self._policy.waiting_on_client:
                upstream.resume_reading()
            self._cancel("deadline", "up_ping", "up_pong")
            if "upstream_linger" not in self._timers:
                self._timers["upstream_linger"] = self._loop.call_later(
                    self._limits.close_timeout_s, upstream.abort)
        self._check_done()

    def _upstream_lost(self, exc: Exception | None) -> None:
        self._upstream_open = False
        self._cancel("deadline", "up_ping", "up_pong", "upstream_linger")
        if self._forwarding and self._u2c.close is None and self._c2u.close is None:
            self._end(self._policy.connection_lost())
        elif self._ending is None:
            self._ending = self._natural_ending()
        client = self._client
        if self._forwarding and client is not None and self._client_open:
            # The closing handshake passed through: the client has the upstream's close (or
            # sent its own); close once it has answered, or after close_timeout_s.
            self._forwarding = False
            if self._c2u.close is not None:
                client.close()
            else:
                self._timers["client_linger"] = self._loop.call_later(
                    self._limits.close_timeout_s, self._drop_client)
        self._check_done()

    def _natural_ending(self) -> Ending:
        """A closing handshake that passed through: the upstream's close code when the
        upstream began it, else the client's leaving."""
        if self._u2c.close is not None and self._upstream_first:
            return self._policy.upstream_closed(self._u2c.close)
        return Ending.client_left()


def _write(transport: asyncio.Transport | None, whole: bytes, cut: list[tuple[int, int]] | None) -> None:
    """Write ``whole`` less the ``cut`` byte ranges (rtgate's own pongs), in order."""
    if transport is None:  # not started: nothing can have been read either
        return
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

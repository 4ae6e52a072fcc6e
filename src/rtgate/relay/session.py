"""One relayed session: a client socket joined to an upstream GA WebSocket.

Contract:

* Frames pass both ways as received: text stays text (the same string), binary stays
  binary, audio payloads are never decoded or re-encoded. The upstream's first
  ``session.created`` reaches the client as is. A Preview client's frames go through
  :class:`~rtgate.relay.preview.PreviewDialect` instead.
* A session bound to an ephemeral key starts with a ``session.update`` carrying the bound
  config (without ``model``), so the upstream applies what the key promised.
* One :class:`asyncio.TaskGroup` per session holds both pumps; whichever ends first
  decides the ending and cancels the other; the upstream socket is closed on every path.

Endings (the client gets an ``error`` event first where one is listed):

=============================================  ==========================  ============
what happened                                   error code                  close
=============================================  ==========================  ============
upstream refused / unreachable / not resolved   ``upstream_unavailable``    1013
/ timed out / HTTP 429 or 5xx
no credential in the environment                ``upstream_misconfigured``  1011
upstream HTTP 4xx on the upgrade                ``upstream_rejected``       1011
upstream silent past ``answer_deadline_s``      ``upstream_timeout``        1011
while an answer is owed (see ``_answered``)
upstream missed a keepalive pong                ``upstream_timeout``        1011
upstream connection reset / lost mid-session    ``upstream_connection_lost``  1011
upstream closed with code C (e.g. 4000, 3000)   (upstream's own frames)     C
client disconnected                             —                           upstream
                                                                            closed 1000
a send to the client blocked past               — (counted as               1008, upstream
``send_deadline_s`` (the client stopped         ``client_not_reading``)     closed 1000
reading)
=============================================  ==========================  ============

A GA session whose client connection was armed for splicing (``splice``) runs on the
spliced data path instead (:mod:`.splice`): the same endings, except that close frames
pass end to end (a client's own close reaches the upstream as sent) and back-pressure
comes from the client transport's write flow control rather than a blocked send.

A client that stops reading (parsed path): every frame to the client is sent directly (the relay holds
one frame at a time, no queue; the socket's bounded write buffer back-pressures the
upstream), under the ``send_deadline_s`` of the local pipeline. One watchdog timer per
session, armed only while a send is in flight (:meth:`RelaySession._watch_sends`), cancels
a send that blocks past it; the session then closes the upstream and the client with 1008
and the local pipeline's reason. The answer deadline is off while the relay waits on the
client, so a slow client is never blamed on the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..asgi.hooks import SpliceHook
from ..core.ids import IdFactory
from ..metrics import event_type_label
from ..protocol.errors import SERVER_ERROR, RealtimeError, error_event
from .config import UpstreamConfig
from .frames import frame_type
from .metrics import RelayMetrics
from .preview import PreviewDialect
from .rawlink import open_raw_upstream
from .splice import TO_CLIENT, TO_UPSTREAM, SplicedRelay
from .upstream import RelayLimits, UpstreamUnavailable, open_upstream

log = logging.getLogger("rtgate.relay")

_NO_ANSWER = "input_audio_buffer.append"
_UNSENDABLE_CLOSE_CODES = frozenset({1005, 1006, 1015})
NOT_READING_REASON = "client is not reading events fast enough"
"""The close reason for a client that stops reading (the local pipeline's, for parity)."""


class ClientGone(Exception):
    """The client socket is closed; nothing more can be sent to it."""


class ClientStuck(Exception):
    """A send to the client blocked past the send deadline: the client is not reading."""


class ClientSocket(Protocol):
    """The client's side of a relayed session (the transport adapts its socket to this)."""

    async def receive(self) -> str | bytes | None:
        """The next frame (text as ``str``, binary as ``bytes``); ``None`` once disconnected."""
        ...

    async def send_text(self, text: str) -> None:
        """Send one text frame; raises :class:`ClientGone` when the client is closed."""
        ...

    async def send_bytes(self, data: bytes) -> None:
        """Send one binary frame; raises :class:`ClientGone` when the client is closed."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


def _size(frame: str | bytes) -> int:
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode())


@dataclass(frozen=True, slots=True)
class Ending:
    """How a relayed session ends: the close sent to the client, and an error before it."""

    close_code: int
    reason: str
    error: RealtimeError | None = None
    by_client: bool = False
    client_stuck: bool = False
    """The client stopped reading: no ``error`` event is sent (it would not be read)."""

    @classmethod
    def fault(cls, error: RealtimeError, close_code: int) -> Ending:
        return cls(close_code, error.close_reason, error)

    @classmethod
    def not_reading(cls, send_deadline_s: float) -> Ending:
        error = RealtimeError(
            f"The client stopped reading: a send blocked for more than {send_deadline_s:g} s.",
            "client_not_reading", type=SERVER_ERROR)
        return cls(1008, NOT_READING_REASON, error, client_stuck=True)


class _Ended(Exception):
    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.reason)
        self.ending = ending


@dataclass
class RelaySession:
    """Relays one client session to ``upstream``; :meth:`run` returns when it has ended."""

    upstream: UpstreamConfig
    model: str
    client: ClientSocket
    limits: RelayLimits
    metrics: RelayMetrics | None = None
    intent: str | None = None
    bound_session: Mapping[str, Any] | None = None
    dialect: PreviewDialect | None = None
    environ: Mapping[str, str] | None = None
    splice: SpliceHook | None = None
    """The client connection's armed splice hook: a GA session's frames then pass as raw
    bytes (:mod:`.splice`); without it, or for a Preview dialect, every frame is parsed."""

    def __post_init__(self) -> None:
        self.id = f"relay_{secrets.token_hex(8)}"
        self._deadline: asyncio.Timeout | None = None
        self._owed = 1  # the upstream owes session.created
        self._loop = asyncio.get_running_loop()
        self.frames = {TO_UPSTREAM: 0, TO_CLIENT: 0}
        self.bytes = {TO_UPSTREAM: 0, TO_CLIENT: 0}
        self.ending: Ending | None = None
        self._forwarding = False  # the upstream pump is waiting on the client
        self._sends: dict[asyncio.Task[Any], float] = {}  # sends in flight: loop time started
        self._stalled: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._shut_down = asyncio.Event()
        self._shutdown_error: RealtimeError | None = None
        self._spliced: SplicedRelay | None = None

    def shut_down(self, error: RealtimeError) -> None:
        """End the relay for the server's shutdown: ``error``, then close 1012 to the client
        and 1001 (Going Away) to the upstream (server/drain.py)."""
        self._shutdown_error = error
        self._shut_down.set()
        if self._spliced is not None:
            self._spliced.shut_down(error)

    async def _until_shut_down(self) -> None:
        await self._shut_down.wait()
        assert self._shutdown_error is not None
        raise _Ended(Ending.fault(self._shutdown_error, 1012))

    async def run(self) -> None:
        name = self.upstream.name
        m = self.metrics
        if m is not None:
            m.sessions.inc(name)
        if self.splice is not None and self.dialect is None and await self._run_spliced():
            return
        started = time.perf_counter()
        try:
            upstream = await open_upstream(
                self.upstream, self.model, self.limits, intent=self.intent, environ=self.environ
            )
        except UpstreamUnavailable as exc:
            error = RealtimeError(exc.message, exc.code, type=SERVER_ERROR)
            await self.finish(Ending.fault(error, exc.close_code))
            return
        if m is not None:
            m.connect_seconds.observe(time.perf_counter() - started, name)
            m.active.inc(name)
        log.info("%s: relaying model %s to upstream %s", self.id, self.model, name)
        ending = Ending(1011, "relay ended", by_client=True)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._upstream_to_client(upstream))
                group.create_task(self._client_to_upstream(upstream))
                group.create_task(self._until_shut_down())
        except* _Ended as ended:
            first = ended.exceptions[0]
            ending = first.ending if isinstance(first, _Ended) else ending
        except* ClientStuck:
            ending = Ending.not_reading(self.limits.send_deadline_s)
        except* ClientGone:
            ending = Ending(1000, "client disconnected", by_client=True)
        finally:
            if m is not None:
                m.active.dec(name)
            if ending.by_client:
                await upstream.close(1000, "client disconnected")
            elif ending.client_stuck:  # the upstream goes first: the client's close may wait
                await upstream.close(1000, "client not reading")
        await self.finish(ending)
        await upstream.close(1000, "relay ended")

    async def _run_spliced(self) -> bool:
        """Relay over the spliced data path; ``False`` when the client connection cannot be
        taken (the hook is released and the parsed path runs instead)."""
        splice = self.splice
        assert splice is not None
        name, m = self.upstream.name, self.metrics
        started = time.perf_counter()
        try:
            transport, link = await open_raw_upstream(
                self.upstream, self.model, self.limits, intent=self.intent, environ=self.environ
            )
        except UpstreamUnavailable as exc:
            splice.release()
            error = RealtimeError(exc.message, exc.code, type=SERVER_ERROR)
            await self.finish(Ending.fault(error, exc.close_code))
            return True
        relay = SplicedRelay(name=name, relay_id=self.id, limits=self.limits, metrics=m,
                             frames=self.frames, bytes_=self.bytes, ending_factory=Ending)
        taken = splice.take(relay.client_sink)
        if taken is None:
            splice.release()
            transport.abort()
            return False
        client, client_early = taken
        self._spliced = relay
        upstream_early = link.attach(relay.upstream_sink)
        if m is not None:
            m.connect_seconds.observe(time.perf_counter() - started, name)
            m.active.inc(name)
        log.info("%s: relaying model %s to upstream %s (spliced)", self.id, self.model, name)
        try:
            relay.start(client, client_early, transport, upstream_early, self.bound_session)
            if self._shutdown_error is not None:  # the drain ended it while it opened
                relay.shut_down(self._shutdown_error)
            ending = await relay.wait()
        finally:
            if m is not None:
                m.active.dec(name)
        self._record(ending)
        return True

    async def finish(self, ending: Ending) -> None:
        """Send ``ending`` to the client (its ``error`` event, then the close) and record it."""
        if not ending.by_client:
            try:
                if ending.error is not None and not ending.client_stuck:
                    with contextlib.suppress(ClientStuck):  # the close still goes (bounded)
                        await self._send_error(ending.error)
                await self.client.close(ending.close_code, ending.reason[:120])
            except ClientGone:
                pass
        self._record(ending)

    def _record(self, ending: Ending) -> None:
        """Log ``ending`` and count it in the metrics (faults, close codes sent)."""
        self.ending = ending
        m = self.metrics
        if ending.error is not None:
            log.warning("%s: %s (close %d)", self.id, ending.error.message, ending.close_code)
            if m is not None:
                m.faults.inc(self.upstream.name, ending.error.code or "unknown")
        if not ending.by_client and m is not None:
            m.closes.inc(self.upstream.name, str(ending.close_code))
        log.info(
            "%s closed: %d frames / %d bytes to upstream, %d frames / %d bytes to client, close %s%s",
            self.id, self.frames[TO_UPSTREAM], self.bytes[TO_UPSTREAM], self.frames[TO_CLIENT],
            self.bytes[TO_CLIENT], "by client" if ending.by_client else ending.close_code,
            f"; {self.dialect.summary()}" if self.dialect is not None else "",
        )

    async def _send_error(self, error: RealtimeError) -> None:
        text = orjson.dumps(error_event(error, IdFactory().event())).decode()
        for out in self.dialect.to_client(text) if self.dialect is not None else [text]:
            await self._send(out)

    async def _send(self, frame: str | bytes) -> None:
        """Send one frame to the client under the send deadline.

        Raises :class:`ClientGone` when the client has left and :class:`ClientStuck` when
        the send blocked past ``send_deadline_s``. The deadline costs no timer per frame:
        the send is recorded, and :meth:`_watch_sends` is armed only if it is not already.
        """
        task = asyncio.current_task()
        assert task is not None
        started = self._loop.time()
        self._sends[task] = started
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(started + self.limits.send_deadline_s,
                                                self._watch_sends)
        try:
            if isinstance(frame, bytes):
                await self.client.send_bytes(frame)
            else:
                await self.client.send_text(frame)
        except asyncio.CancelledError:
            if task not in self._stalled:
                raise
            self._stalled.discard(task)
            task.uncancel()
            raise ClientStuck from None
        finally:
            del self._sends[task]

    def _watch_sends(self) -> None:
        """Cancel every send in flight for ``send_deadline_s``; re-arm for the oldest other."""
        self._watchdog = None
        limit = self.limits.send_deadline_s
        due = self._loop.time() + 0.001  # timers may fire up to the clock resolution early
        oldest: float | None = None
        for task, started in self._sends.items():
            if started + limit <= due:
                if task not in self._stalled:
                    self._stalled.add(task)
                    task.cancel()
            elif oldest is None or started < oldest:
                oldest = started
        if oldest is not None:
            self._watchdog = self._loop.call_at(oldest + limit, self._watch_sends)

    def _arm(self) -> None:
        """A frame that needs an answer went upstream: one more answer is owed."""
        self._owed += 1
        deadline = self._deadline
        if deadline is not None and not self._forwarding and deadline.when() is None:
            deadline.reschedule(self._loop.time() + self.limits.answer_deadline_s)

    def _answered(self, deadline: asyncio.Timeout) -> None:
        """An upstream frame arrived: it pays one owed answer; the deadline is off while the
        frame goes to the client, and :meth:`_forwarded` restarts it for the rest.

        Upstream frames are not tied to the client event they answer, so each counts as the
        answer to one event, oldest first. Unprompted frames (VAD events, audio deltas) can
        only pay answers early — a stall may then go unnoticed by this rule (the keepalive
        still applies) — never make a healthy upstream look stalled: while answers are owed,
        every upstream frame is progress and pushes the deadline back. Time spent waiting
        on a slow client is not the upstream's silence.
        """
        if self._owed:
            self._owed -= 1
        if deadline.when() is not None:
            deadline.reschedule(None)
        self._forwarding = True

    def _forwarded(self, deadline: asyncio.Timeout) -> None:
        self._forwarding = False
        if self._owed:
            deadline.reschedule(self._loop.time() + self.limits.answer_deadline_s)

    async def _client_to_upstream(self, upstream: ClientConnection) -> None:
        if self.bound_session:
            session = {k: v for k, v in self.bound_session.items() if k != "model"}
            self._arm()
            await upstream.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        name, m, dialect = self.upstream.name, self.metrics, self.dialect
        while True:
            frame = await self.client.receive()
            if frame is None:
                raise _Ended(Ending(1000, "client disconnected", by_client=True))
            received = time.perf_counter_ns()
            kind = frame_type(frame)
            size = _size(frame)
            self.frames[TO_UPSTREAM] += 1
            self.bytes[TO_UPSTREAM] += size
            if dialect is None:
                forward: list[str | bytes] = [frame]
                if kind != _NO_ANSWER:
                    self._arm()
            else:
                forward, error = dialect.to_upstream(frame)
                if error is not None:
                    await self._send_error(error)
                for out in forward:
                    if out is not frame or kind != _NO_ANSWER:
                        self._arm()
            try:
                for out in forward:
                    await upstream.send(out)
            except ConnectionClosed:
                return  # the other pump sees the same close and decides the ending
            if m is not None:
                m.events.inc(name, TO_UPSTREAM, event_type_label(kind))
                m.bytes.inc(name, TO_UPSTREAM, amount=size)
                m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, name, TO_UPSTREAM)

    async def _upstream_to_client(self, upstream: ClientConnection) -> None:
        name, m, dialect, send = self.upstream.name, self.metrics, self.dialect, self._send
        try:
            async with asyncio.timeout_at(self._loop.time() + self.limits.answer_deadline_s) as deadline:
                self._deadline = deadline
                async for frame in upstream:
                    received = time.perf_counter_ns()
                    self._answered(deadline)
                    size = _size(frame)
                    self.frames[TO_CLIENT] += 1
                    self.bytes[TO_CLIENT] += size
                    try:
                        # Binary frames pass as they are, on this path as on the spliced
                        # one (docs/relay.md); only text is the dialect's to translate.
                        if dialect is None or isinstance(frame, bytes):
                            await send(frame)
                        else:
                            for out in dialect.to_client(frame):
                                await send(out)
                    except ClientGone:
                        raise _Ended(Ending(1000, "client disconnected", by_client=True)) from None
                    except ClientStuck:
                        raise _Ended(Ending.not_reading(self.limits.send_deadline_s)) from None
                    finally:
                        self._forwarded(deadline)
                    if m is not None:
                        m.events.inc(name, TO_CLIENT, event_type_label(frame_type(frame)))
                        m.bytes.inc(name, TO_CLIENT, amount=size)
                        m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, name, TO_CLIENT)
        except TimeoutError:
            raise _Ended(Ending.fault(RealtimeError(
                f"The relay upstream '{name}' stalled: no event within "
                f"{self.limits.answer_deadline_s:g} s of a client event that needs an answer.",
                "upstream_timeout", type=SERVER_ERROR), 1011)) from None
        except ConnectionClosed:
            pass
        raise _Ended(self._upstream_closed(upstream))

    def _upstream_closed(self, upstream: ClientConnection) -> Ending:
        name = self.upstream.name
        received, sent = upstream.protocol.close_rcvd, upstream.protocol.close_sent
        if received is not None:
            code = 1000 if received.code == 1005 else received.code
            if code not in _UNSENDABLE_CLOSE_CODES:
                return Ending(code, received.reason)
        if sent is not None and sent.code == 1011 and "ping" in sent.reason:
            return Ending.fault(RealtimeError(
                f"The relay upstream '{name}' stopped answering keepalive pings "
                f"({self.limits.ping_timeout_s:g} s).", "upstream_timeout", type=SERVER_ERROR), 1011)
        return Ending.fault(RealtimeError(
            f"The connection to the relay upstream '{name}' was lost mid-session "
            "(reset or closed without a close frame).", "upstream_connection_lost",
            type=SERVER_ERROR), 1011)

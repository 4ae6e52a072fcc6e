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
while an answer is owed (:mod:`.policy`)
upstream missed a keepalive pong                ``upstream_timeout``        1011
upstream connection reset / lost mid-session    ``upstream_connection_lost``  1011
upstream closed with code C (e.g. 4000, 3000)   (upstream's own frames)     C
client disconnected                             —                           upstream
                                                                            closed 1000
a send to the client blocked past               — (counted as               1008, upstream
``send_deadline_s`` (the client stopped         ``client_not_reading``)     closed 1000
reading)
the server drains (shutdown)                    the drain's error           1012, upstream
                                                                            closed 1001
=============================================  ==========================  ============

Each ending, the answer deadline and the keepalive verdicts come from one sans-I/O
:class:`~.policy.RelayPolicy`, which the spliced path uses too; this module carries
them out on parsed frames, with one forwarding routine (:meth:`RelaySession._pump`) for
both directions.

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
from .policy import NO_ANSWER, TO_CLIENT, TO_UPSTREAM, Ending, RelayPolicy
from .preview import PreviewDialect
from .rawlink import open_raw_upstream
from .splice import SplicedRelay
from .upstream import RelayLimits, UpstreamUnavailable, open_upstream

log = logging.getLogger("rtgate.relay")

Frame = str | bytes


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
        self._loop = asyncio.get_running_loop()
        self._policy = RelayPolicy(self.upstream.name, self.limits, self._loop.time())
        self.frames = {TO_UPSTREAM: 0, TO_CLIENT: 0}
        self.bytes = {TO_UPSTREAM: 0, TO_CLIENT: 0}
        self.ending: Ending | None = None
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
        raise _Ended(RelayPolicy.shut_down(self._shutdown_error))

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
        self._policy = RelayPolicy(name, self.limits, self._loop.time())  # the upstream is open now
        ending = Ending(1011, "relay ended", by_client=True)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._upstream_to_client(upstream))
                group.create_task(self._pump(upstream, to_upstream=True))
                group.create_task(self._until_shut_down())
        except* _Ended as ended:
            first = ended.exceptions[0]
            ending = first.ending if isinstance(first, _Ended) else ending
        except* ClientStuck:
            ending = self._policy.not_reading()
        except* ClientGone:
            ending = Ending.client_left()
        finally:
            if m is not None:
                m.active.dec(name)
            if ending.by_client or ending.client_stuck:  # upstream first: the client's close may wait
                await upstream.close(ending.upstream_code, ending.upstream_reason)
        await self.finish(ending)
        await upstream.close(ending.upstream_code, ending.upstream_reason)

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
                             frames=self.frames, bytes_=self.bytes)
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

    def _reschedule(self) -> None:
        """Move the answer deadline to the policy's due time (``None``: off)."""
        deadline = self._deadline
        if deadline is not None:
            due = self._policy.answer_due()
            if due != deadline.when():
                deadline.reschedule(due)

    def _requested(self) -> None:
        """A frame that needs an answer went upstream."""
        self._policy.requested(self._loop.time())
        self._reschedule()

    async def _upstream_to_client(self, upstream: ClientConnection) -> None:
        """The upstream → client pump, under the answer deadline."""
        try:
            async with asyncio.timeout_at(self._policy.answer_due()) as deadline:
                self._deadline = deadline
                try:
                    await self._pump(upstream, to_upstream=False)
                finally:
                    self._deadline = None  # a finished Timeout cannot be rescheduled
        except TimeoutError:
            raise _Ended(self._policy.stalled()) from None

    async def _pump(self, upstream: ClientConnection, *, to_upstream: bool) -> None:
        """Forward frames one way, one at a time, until the source ends.

        Raises :class:`_Ended` with the ending when the source ends (the client left, the
        upstream closed) or a send to the client fails; returns when the upstream closes
        under a send to it (the other pump sees the same close and decides the ending).
        Text frames keep their string and binary frames their bytes; only a Preview
        dialect translates text. The policy hears of each request and answer.
        """
        direction = TO_UPSTREAM if to_upstream else TO_CLIENT
        name, m, policy, loop = self.upstream.name, self.metrics, self._policy, self._loop
        client, dialect = self.client, self.dialect
        if to_upstream and self.bound_session:
            session = {k: v for k, v in self.bound_session.items() if k != "model"}
            self._requested()
            await upstream.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        while True:
            frame: Frame | None
            if to_upstream:
                frame = await client.receive()
                if frame is None:
                    raise _Ended(Ending.client_left())
            else:
                try:
                    frame = await upstream.recv()
                except ConnectionClosed:
                    raise _Ended(self._upstream_closed(upstream)) from None
            received = time.perf_counter_ns()
            size = _size(frame)
            self.frames[direction] += 1
            self.bytes[direction] += size
            kind = frame_type(frame) if to_upstream or m is not None else None
            try:
                if to_upstream:
                    if dialect is None:
                        if kind != NO_ANSWER:
                            self._requested()
                        await upstream.send(frame)
                    else:
                        for out in await self._preview_to_upstream(dialect, frame, kind):
                            await upstream.send(out)
                else:
                    policy.answered(1, loop.time())
                    policy.client_blocked()  # time spent on the client is not the upstream's
                    self._reschedule()
                    try:
                        # Binary frames pass as they are, on this path as on the spliced
                        # one (docs/relay.md); only text is the dialect's to translate.
                        if dialect is None or isinstance(frame, bytes):
                            await self._send(frame)
                        else:
                            for out in dialect.to_client(frame):
                                await self._send(out)
                    finally:
                        policy.client_unblocked(loop.time())
                        self._reschedule()
            except ConnectionClosed:
                return
            except ClientGone:
                raise _Ended(Ending.client_left()) from None
            except ClientStuck:
                raise _Ended(policy.not_reading()) from None
            if m is not None:
                m.events.inc(name, direction, event_type_label(kind))
                m.bytes.inc(name, direction, amount=size)
                m.added_latency.observe((time.perf_counter_ns() - received) / 1e9, name, direction)

    async def _preview_to_upstream(self, dialect: PreviewDialect, frame: Frame,
                                   kind: str | None) -> list[Frame]:
        """What goes upstream for a Preview client frame; each frame that needs an answer is
        a request. A frame the dialect refuses gets its error event back instead."""
        forward, error = dialect.to_upstream(frame)
        if error is not None:
            await self._send_error(error)
        for out in forward:
            if out is not frame or kind != NO_ANSWER:
                self._requested()
        return forward

    def _upstream_closed(self, upstream: ClientConnection) -> Ending:
        """The ending for an upstream connection that closed (websockets' closing handshake)."""
        received, sent = upstream.protocol.close_rcvd, upstream.protocol.close_sent
        close = (received.code, received.reason) if received is not None else None
        # websockets closes 1011 "keepalive ping timeout" when a pong does not come.
        ping_timed_out = sent is not None and sent.code == 1011 and "ping" in sent.reason
        return self._policy.upstream_closed(close, ping_timed_out=ping_timed_out)

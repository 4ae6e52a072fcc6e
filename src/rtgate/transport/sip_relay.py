"""A SIP call bridged to a cloud upstream's GA WebSocket session (a relayed model).

rtgate terminates SIP and RTP; the conversation runs on the upstream. The upstream session
is configured with the call's codec as its input and output format (``audio/pcmu`` or
``audio/pcma``), so audio crosses the bridge without being decoded:

* **Inbound:** each RTP payload (after aiortp's jitter buffer, which reorders; a lost
  packet becomes G.711 silence of its length, keeping the upstream's audio clock right)
  goes upstream as it came, base64 in an ``input_audio_buffer.append``.
* **Outbound:** ``response.output_audio.delta`` payloads are queued and sent as paced
  20 ms RTP packets (160 bytes of G.711); between answers silence is sent. Deltas are not
  passed to sidebands (the audio is on the phone line, as for local SIP calls).
* **Barge-in:** when the upstream reports ``input_audio_buffer.speech_started`` while an
  answer is still queued, the queue is dropped and the upstream is told what the caller
  heard (``conversation.item.truncate`` with the milliseconds actually sent).
* **DTMF** (RFC 4733) becomes ``input_audio_buffer.dtmf_event_received`` on the sidebands
  (the upstream never sees the RTP, so rtgate reports it, as for local calls).
* **Sidebands** (``?call_id=``) open with ``session.created`` carrying the upstream's
  session as last reported, then get every upstream event as the upstream sent it (same
  text); their client events go upstream as they came.

The call ends on hangup, on the caller's BYE, without RTP for ``media_timeout_s``, and when
the upstream ends: a lost upstream (no close frame) is reported on the sidebands as an
``error`` ``upstream_connection_lost`` and the sidebands are closed with 1011; an upstream
close is passed to the sidebands with its code and reason. Either way the caller gets a BYE.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..core.ids import IdFactory
from ..protocol.errors import SERVER_ERROR, RealtimeError, error_event
from .call_tasks import CallTasks, watch_media
from .playout import FramePacer, PlayoutQueue
from .sip_call import DTMF_KEYS, GuardedRTPSession, SipMediaSettings
from .webrtc import CallChannel, WebRTCSettings

__all__ = ["FRAME_BYTES", "RawRTPSession", "RelayedSipCall", "UpstreamRefused", "configure_upstream",
           "g711_format"]

log = logging.getLogger("rtgate.sip")

FRAME_BYTES = 160
"""One 20 ms RTP packet of G.711 at 8 kHz (one byte per sample)."""
BYTES_PER_MS = 8
SILENCE = {"audio/pcmu": b"\xff", "audio/pcma": b"\xd5"}
"""The G.711 code of a zero sample in each law."""
MAX_UPSTREAM_BACKLOG = 250
"""Frames queued for the upstream socket (5 s of audio) before it counts as not reading."""


def g711_format(payload_type: int) -> str:
    """The session audio format of a static G.711 RTP payload type (0 PCMU, 8 PCMA)."""
    return "audio/pcma" if payload_type == 8 else "audio/pcmu"


class UpstreamRefused(Exception):
    """The upstream answered the session configuration with an ``error`` event."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")))
        self.error = error


async def configure_upstream(conn: ClientConnection, session: dict[str, Any], within_s: float
                             ) -> dict[str, Any]:
    """Send ``session.update`` with ``session`` and wait for the upstream's
    ``session.updated``; returns its session. Raises :class:`UpstreamRefused` on an
    ``error`` event, ``TimeoutError`` past ``within_s``, ``ConnectionClosed`` if it closes."""
    await conn.send(orjson.dumps({"type": "session.update", "session": session}).decode())
    async with asyncio.timeout(within_s):
        while True:
            message = await conn.recv()
            if not isinstance(message, str):
                continue
            event = orjson.loads(message)
            if event.get("type") == "session.updated":
                return dict(event.get("session") or {})
            if event.get("type") == "error":
                raise UpstreamRefused(dict(event.get("error") or {}))


class RawRTPSession(GuardedRTPSession):
    """A guarded RTP session that hands out payloads undecoded (``on_payload``).

    aiortp decodes in ``_deliver_audio_frame``; this class takes the jitter buffer's frame
    there instead (a test fails if an aiortp upgrade renames it)."""

    on_payload: Callable[[bytes, int], None] | None = None
    """``(payload, packets lost just before it)``, in sequence order."""

    def _deliver_audio_frame(self, frame: Any) -> None:
        if self.on_payload is None:
            super()._deliver_audio_frame(frame)
            return
        self.on_payload(bytes(frame.data), int(frame.lost or 0))


class _Upstream:
    """What the sideband endpoint (server/calls.py) uses of a call's runner, for a relayed
    call: the greeting's ids and session, and client events forwarded upstream."""

    def __init__(self, call: RelayedSipCall) -> None:
        self._call = call
        self.ids = IdFactory()

    @property
    def session(self) -> _Upstream:
        return self

    def wire_session(self) -> dict[str, Any]:
        return self._call.upstream_session

    async def receive_text(self, text: str) -> None:
        self._call.to_upstream(text)

    def receive_binary(self) -> None:
        self._call.report(RealtimeError(
            "Expected a text WebSocket message; binary frames are not supported.", "invalid_event"))

    def shut_down(self, reason: str) -> None:
        self._call.request_close(reason)


class RelayedSipCall:
    """One accepted SIP call bridged to an upstream session; see the module docstring.

    It offers what the call registry, sideband, hangup and the SIP endpoint use of a
    :class:`~rtgate.transport.sip_call.SipCall`: ``id``, ``runner`` (sideband view),
    ``channel``, ``rtp``, ``closed``, :meth:`request_close`, :meth:`aclose`.
    """

    def __init__(
        self,
        call_id: str,
        *,
        upstream: ClientConnection,
        upstream_name: str,
        upstream_session: dict[str, Any],
        audio_format: str,
        rtp: RawRTPSession,
        settings: SipMediaSettings,
        send_deadline_s: float,
        send_bye: Callable[[], None],
        on_closed: Callable[[RelayedSipCall], None],
    ) -> None:
        self.id = call_id
        self.upstream = upstream
        self.upstream_name = upstream_name
        self.upstream_session = upstream_session
        self.audio_format = audio_format
        self.rtp = rtp
        self.settings = settings
        self.channel = CallChannel(WebRTCSettings(max_pending_events=0), send_deadline_s,
                                   self.request_close)
        self.runner = _Upstream(self)
        self._send_bye = send_bye
        self._on_closed = on_closed
        self._silence = SILENCE[audio_format]
        self._outbox: asyncio.Queue[str] = asyncio.Queue(MAX_UPSTREAM_BACKLOG)
        # Queued answer audio (G.711, as the upstream sent it), taken 160 bytes a packet;
        # what went out is counted per part, for the truncation on barge-in.
        self._playout = PlayoutQueue(
            self, max_bytes=int(settings.max_output_audio_s * 1000 * BYTES_PER_MS))
        self._played: dict[tuple[str, int], int] = {}
        self._tasks = CallTasks(call_id)
        self._spawn = self._tasks.spawn
        self._close_task: asyncio.Task[None] | None = None
        self._sideband_close = (1000, "call ended")
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.last_media = time.monotonic()
        self.rtp_packets_sent = 0
        self.appends_sent = 0

    async def start(self) -> None:
        """Start the pumps (the 200 OK has been sent, the upstream is configured)."""
        self.rtp.on_payload = self._on_payload
        self.rtp.on_dtmf = self._on_dtmf
        self._spawn(self._read_upstream(), "upstream-in")
        self._spawn(self._write_upstream(), "upstream-out")
        self._spawn(self._pump_output(), "audio-out")
        self._spawn(self._watch_media(), "media-watch")

    # ------------------------------------------------------------------ caller → upstream

    def to_upstream(self, text: str) -> None:
        """Queue one client event's text for the upstream (in order)."""
        if self._close_task is not None:
            return
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self._fail("upstream_timeout", "stopped reading the call's audio")

    def _on_payload(self, payload: bytes, lost: int) -> None:
        self.last_media = time.monotonic()
        if lost:
            # Bounded: aiortp reports at most its buffer's worth of lost packets.
            payload = self._silence * (len(payload) * min(lost, 50)) + payload
        self.appends_sent += 1
        self.to_upstream(orjson.dumps({"type": "input_audio_buffer.append",
                                       "audio": base64.b64encode(payload).decode()}).decode())

    def _on_dtmf(self, digit: str, duration: int) -> None:
        self.last_media = time.monotonic()
        if digit not in DTMF_KEYS or self._close_task is not None:
            return
        self._to_sidebands(orjson.dumps({"type": "input_audio_buffer.dtmf_event_received",
                                         "event": digit, "received_at": int(time.time())}).decode())

    async def _write_upstream(self) -> None:
        while True:
            text = await self._outbox.get()
            try:
                await self.upstream.send(text)
            except ConnectionClosed:
                return  # the reader sees the close and ends the call

    async def _watch_media(self) -> None:
        await watch_media(lambda: self.last_media, self.settings.media_timeout_s, self.request_close)

    # ------------------------------------------------------------------ upstream → caller

    async def _read_upstream(self) -> None:
        try:
            async for message in self.upstream:
                if isinstance(message, str):
                    await self._upstream_event(message)
        except ConnectionClosed:
            pass
        if self._close_task is not None:
            return
        received = self.upstream.protocol.close_rcvd
        if received is None:
            self._fail("upstream_connection_lost", "closed the connection without a close frame")
            return
        code = received.code if received.code not in (1005, 1006, 1015) else 1000
        self._sideband_close = (code, received.reason)
        self.request_close(f"the upstream closed the session ({received.code})")

    async def _upstream_event(self, text: str) -> None:
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            event = {}  # not ours to judge: passed on as the upstream sent it
        if not isinstance(event, dict):
            event = {}
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            self._queue_audio(event)
            return
        if kind in ("session.created", "session.updated") and isinstance(event.get("session"), dict):
            self.upstream_session = event["session"]
        elif kind == "input_audio_buffer.speech_started":
            self._barge_in()
        await self.channel.send_text(text)

    def _queue_audio(self, event: dict[str, Any]) -> None:
        try:
            audio = base64.b64decode(event.get("delta") or "", validate=True)
        except ValueError:
            log.warning("call %s: the upstream sent an audio delta that is not base64", self.id)
            return
        # Past the cap of docs/sip.md answer audio is dropped.
        self._playout.push(str(event.get("response_id") or ""), str(event.get("item_id") or ""),
                           int(event.get("content_index") or 0), audio)

    # The playout queue's listener: only what went out matters here (the upstream, not
    # rtgate, reports output_audio_buffer.* on a relayed call).

    def started(self, response_id: str) -> None:
        pass

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        self._played[(item_id, content_index)] = self._played.get((item_id, content_index), 0) + nbytes

    def stopped(self, response_id: str) -> None:
        pass

    def _take_frame(self) -> bytes:
        """The next 160 bytes to send: queued answer audio, padded with silence."""
        frame = self._playout.take(FRAME_BYTES)
        return frame + self._silence * (FRAME_BYTES - len(frame))

    async def _pump_output(self) -> None:
        """One RTP packet every 20 ms on an absolute schedule (no drift); after a stall of
        the loop the pace resumes rather than bursting."""
        pacer = FramePacer(FRAME_BYTES / BYTES_PER_MS / 1000, max_lag_s=0.2)
        while True:
            await pacer.wait()
            self.rtp.send_audio_auto(self._take_frame())
            self.rtp_packets_sent += 1

    def _barge_in(self) -> None:
        """The caller speaks over queued answer audio: drop it, tell the upstream what was heard."""
        head = self._playout.head()
        if head is None:
            return
        _, item_id, index = head
        self._playout.clear()
        if item_id:
            played_ms = self._played.get((item_id, index), 0) // BYTES_PER_MS
            self.to_upstream(orjson.dumps({"type": "conversation.item.truncate", "item_id": item_id,
                                           "content_index": index, "audio_end_ms": played_ms}).decode())

    # ------------------------------------------------------------------ sidebands

    def _to_sidebands(self, text: str) -> None:
        if self.channel.sidebands:
            self._spawn(self.channel.send_text(text), "sideband-out")

    def report(self, error: RealtimeError) -> None:
        """An ``error`` event from rtgate itself to the sidebands."""
        self._to_sidebands(orjson.dumps(error_event(error, self.runner.ids.event())).decode())

    def _fail(self, code: str, what: str) -> None:
        if self._close_task is not None:
            return
        message = f"The relay upstream '{self.upstream_name}' {what}; the call was ended."
        error = RealtimeError(message, code, type=SERVER_ERROR)
        text = orjson.dumps(error_event(error, self.runner.ids.event())).decode()
        self._sideband_close = (1011, f"server_error.{code}")
        self.request_close(message, final_event=text)

    # ------------------------------------------------------------------ ending

    def request_close(self, reason: str, *, bye: bool = True, final_event: str | None = None) -> None:
        """End the call (idempotent): BYE unless the peer ended it; ``final_event`` goes to
        the sidebands before they close; :attr:`closed` is set once everything has stopped."""
        if self._close_task is None:
            self.close_reason = reason
            if bye:
                try:
                    self._send_bye()
                except Exception:
                    log.warning("call %s: the BYE could not be sent", self.id, exc_info=True)
            self._close_task = asyncio.create_task(self._close(final_event), name=f"{self.id}:close")

    async def _close(self, final_event: str | None) -> None:
        log.info("call %s ending: %s", self.id, self.close_reason)
        try:
            await self._tasks.cancel_all()
            with contextlib.suppress(Exception):
                await self.upstream.close(1000, "call ended")
            if final_event is not None:
                with contextlib.suppress(Exception):
                    await self.channel.send_text(final_event)
            code, why = self._sideband_close
            await self.channel.close_sidebands(code, why)
            with contextlib.suppress(Exception):
                await self.rtp.close()
        finally:
            self._on_closed(self)
            self.closed.set()

    async def aclose(self, reason: str) -> None:
        self.request_close(reason)
        await self.closed.wait()

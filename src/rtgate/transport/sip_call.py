"""An accepted SIP call's media and session: RTP G.711 in and out, DTMF, server playback.

The same :class:`~rtgate.core.session.Session` and runner serve a SIP call as serve a
WebSocket or a WebRTC call, and the same playback (:class:`.webrtc_playback.CallPlayback`)
plays its answers, so ``output_audio_buffer.started/stopped/cleared``, barge-in and
truncation to the audio played behave exactly as on WebRTC. Only the edges differ:

* **Input audio** arrives as RTP (PCMU or PCMA, whichever the SDP answer chose); aiortp
  reorders it in a small jitter buffer, conceals lost packets and decodes it to 8 kHz
  PCM16, which is converted to the session's input format and fed to the core as an
  ``input_audio_buffer.append`` (:meth:`SessionRunner.feed_audio`), then to the VAD.
* **Output audio**: the playback track runs at 8 kHz and paces 20 ms frames in real time;
  each frame is G.711-encoded and sent as one RTP packet at once, so what the track counts
  as played is what went on the wire.
* **DTMF** (RFC 4733 ``telephone-event``) becomes ``input_audio_buffer.dtmf_event_received``.
* **Events** go to the sideband WebSockets attached with ``?call_id=`` (a SIP call has no
  data channel); a sideband may send client events.
* **RTP from an unexpected source** — an address other than the SDP offer's connection
  address or the SIP peer's — is dropped and counted, never played to the session.

A call ends on hangup (a BYE is sent), on the peer's BYE, when no RTP arrives for
``media_timeout_s``, or when the session ends. Every task belongs to the call and is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortp import RTPSession

from ..audio import G711_RATE, Resampler, encode_from_pcm16, format_rate
from ..protocol.errors import RealtimeError
from .call_tasks import CallTasks, watch_media
from .connection import OutputHook, SessionRunner
from .webrtc import CallChannel, WebRTCSettings
from .webrtc_playback import CallPlayback

__all__ = ["GuardedRTPSession", "SipCall", "SipMediaSettings"]

log = logging.getLogger("rtgate.sip")

DTMF_KEYS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class SipMediaSettings:
    """Media limits of SIP calls (the server's ``sip_*`` settings, docs/sip.md)."""

    media_timeout_s: float = 20.0
    """Seconds without inbound RTP after which the caller counts as gone."""
    jitter_frames: int = 2
    """20 ms packets the jitter buffer holds before it releases audio (reordering room)."""
    max_output_audio_s: float = 600.0
    """Output audio queued for playback per call, in seconds; beyond it audio is dropped."""


class GuardedRTPSession(RTPSession):
    """aiortp's RTP session, dropping packets from any host but the expected ones.

    aiortp has no source filter; it hands every datagram to ``_handle_rtp``, so this
    class checks the source there first (a test fails if an aiortp upgrade renames it).
    """

    allowed_hosts: frozenset[str] = frozenset()
    dropped_packets = 0

    def _handle_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] not in self.allowed_hosts:
            self.dropped_packets += 1
            if self.dropped_packets in (1, 100, 10_000):
                log.warning("RTP from unexpected source %s dropped (%d so far)", addr[0],
                            self.dropped_packets)
            return
        super()._handle_rtp(data, addr)


class SipCall:
    """One accepted SIP call: session runner, RTP session and the audio pumps.

    ``send_bye`` ends the SIP dialog from our side; it is called once when the call ends
    for any reason but the peer's own BYE. The call exposes what the call registry,
    sideband and hangup use for WebRTC calls: ``id``, ``runner``, ``channel``,
    ``closed``, :meth:`aclose`.
    """

    def __init__(
        self,
        call_id: str,
        runner_factory: Callable[[CallChannel, OutputHook], SessionRunner],
        *,
        rtp: GuardedRTPSession,
        settings: SipMediaSettings,
        send_deadline_s: float,
        send_bye: Callable[[], None],
        on_closed: Callable[[SipCall], None],
    ) -> None:
        self.id = call_id
        self.settings = settings
        # No data channel: events go to sidebands only, nothing is held for one.
        self.channel = CallChannel(WebRTCSettings(max_pending_events=0), send_deadline_s,
                                   self.request_close)
        self.playback = CallPlayback(max_queued_s=settings.max_output_audio_s,
                                     sample_rate=G711_RATE)
        self.runner = runner_factory(self.channel, self.playback)
        self.playback.bind(self.runner)
        self.rtp = rtp
        self._send_bye = send_bye
        self._on_closed = on_closed
        self._tasks = CallTasks(call_id)
        self._spawn = self._tasks.spawn
        self._close_task: asyncio.Task[None] | None = None
        self._resampler: tuple[str, Resampler] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.last_media = time.monotonic()
        self.rtp_packets_sent = 0

    async def start(self) -> None:
        """Start the session and the media pumps (the 200 OK has been sent)."""
        self.rtp.on_audio = self._on_audio
        self.rtp.on_dtmf = self._on_dtmf
        await self.runner.start()
        self._spawn(self._pump_output(), "audio-out")
        self._spawn(self._watch_media(), "media-watch")

    # ------------------------------------------------------------------ input

    def _on_audio(self, pcm: bytes, timestamp: int) -> None:
        """aiortp delivers decoded 8 kHz PCM16 in order (after the jitter buffer)."""
        self.last_media = time.monotonic()
        if self._close_task is not None:
            return
        fmt = self.runner.session.config.audio.input.format.type
        rate = format_rate(fmt)
        if rate != G711_RATE:
            if self._resampler is None or self._resampler[0] != fmt:
                self._resampler = (fmt, Resampler(G711_RATE, rate))
            pcm = self._resampler[1].process_pcm16(pcm)
        if pcm:
            self.runner.feed_audio(encode_from_pcm16(pcm, fmt))

    def _on_dtmf(self, digit: str, duration: int) -> None:
        """One key press (aiortp reports it once, at its end packet)."""
        self.last_media = time.monotonic()
        if digit not in DTMF_KEYS or self._close_task is not None:
            return
        self.runner.apply(self.runner.session.on_dtmf(digit, time.time()))

    async def _watch_media(self) -> None:
        await watch_media(lambda: self.last_media, self.settings.media_timeout_s, self.request_close)

    # ------------------------------------------------------------------ output

    async def _pump_output(self) -> None:
        """The playback track paces 20 ms frames; each goes out as one RTP packet."""
        track = self.playback.track
        frame_bytes = G711_RATE * 20 // 1000 * 2
        while True:
            frame = await track.recv()
            pcm = bytes(frame.planes[0])[:frame_bytes]
            self.rtp.send_audio_pcm_auto(pcm)
            self.rtp_packets_sent += 1

    def report(self, error: RealtimeError) -> None:
        """An ``error`` event from outside the session (e.g. a failed transfer) to the sidebands."""
        if self._close_task is None:
            self.runner.apply(self.runner.session.report(error))

    # ------------------------------------------------------------------ ending

    def request_close(self, reason: str, *, bye: bool = True) -> None:
        """End the call (idempotent): BYE unless the peer ended it; :attr:`closed` is set
        once everything has stopped."""
        if self._close_task is None:
            self.close_reason = reason
            if bye:
                try:
                    self._send_bye()
                except Exception:
                    log.warning("call %s: the BYE could not be sent", self.id, exc_info=True)
            self._close_task = asyncio.create_task(self._close(), name=f"{self.id}:close")

    async def _close(self) -> None:
        log.info("call %s ending: %s", self.id, self.close_reason)
        try:
            await self._tasks.cancel_all()
            await self.runner.stop()
            self.playback.track.stop()
            await self.channel.close_sidebands(1000, "call ended")
            with contextlib.suppress(Exception):
                await self.rtp.close()
        finally:
            self._on_closed(self)
            self.closed.set()

    async def aclose(self, reason: str) -> None:
        self.request_close(reason)
        await self.closed.wait()

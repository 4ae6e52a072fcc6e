"""WebRTC calls (docs/protocol.md, WebRTC calls and the sideband): one aiortc peer
connection driving one session.

The same :class:`~rtgate.core.session.Session` and runner serve a call as serve a WebSocket;
only the edges differ:

* **Input audio** arrives on the client's Opus track. Each decoded frame is converted to
  mono PCM16 at the session's input rate, encoded in the session's input format and fed
  to the core as an ``input_audio_buffer.append`` (:meth:`SessionRunner.feed_audio`), then
  to the VAD.
* **Output audio** goes to an outbound track paced in real time (20 ms frames) instead of
  ``response.output_audio.delta`` events; the server owns playback, so it emits
  ``output_audio_buffer.started`` when a response's first audio is played and
  ``output_audio_buffer.stopped`` when the last has been (docs/protocol.md, Server events). Barge-in and
  ``output_audio_buffer.clear`` drop queued audio at once, emit
  ``output_audio_buffer.cleared`` and truncate the assistant item to the audio played —
  all decided by the session core (core/playback.py); the call's player
  (:mod:`.webrtc_playback`, the runner's output hook) carries it out and reports progress.
* **Events** travel as JSON text on the data channel the client created (any label), and
  fan out to sideband WebSockets attached with ``?call_id=`` (which may also send events);
  a sideband first gets a ``session.created`` with the call's current session.

A call ends on hangup, when the peer connection fails or closes, when ICE does not connect
within ``ice_connect_timeout_s``, when no inbound audio arrives for ``media_timeout_s``
(a peer that vanished), or when the session ends. Ending stops the runner, closes the peer
connection and the sidebands; every task belongs to the call and is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..audio import encode_from_pcm16, format_rate
from .call_tasks import CallTasks
from .connection import Channel, OutputHook, SessionRunner
from .ice_ports import restrict_host_ports
from .webrtc_playback import CallPlayback, OutputAudioTrack

__all__ = ["CallChannel", "OutputAudioTrack", "WebRTCCall", "WebRTCSettings",
           "live_peer_connections"]

log = logging.getLogger("rtgate.webrtc")


@dataclass(frozen=True, slots=True)
class WebRTCSettings:
    """WebRTC limits and network settings of calls.

    The server fills them from its :class:`~rtgate.server.settings.Settings` (the
    ``webrtc_*`` fields, env ``RTGATE_WEBRTC_<FIELD>``; see docs/webrtc.md).
    """

    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs (``stun:host:port``, ``turn:host:port?transport=udp``); empty: host only."""
    turn_username: str | None = None
    turn_credential: str | None = None
    ice_connect_timeout_s: float = 30.0
    """Seconds from the answer until the peer connection must be connected."""
    media_timeout_s: float = 20.0
    """Seconds without inbound audio after which the peer counts as gone."""
    max_output_audio_s: float = 600.0
    """Output audio queued for playback per call, in seconds; beyond it audio is dropped."""
    max_pending_events: int = 1024
    """Events held for a data channel that is not open yet; beyond it the oldest go."""
    max_inbound_events: int = 1024
    """Client events queued from the data channel before the call counts as flooding."""
    max_data_channel_buffer_bytes: int = 8 * 1024 * 1024
    """Bytes unsent on the data channel before the client counts as not reading."""
    input_jitter_frames: int = 1
    """Complete 20 ms frames that must follow an inbound audio frame before aiortc's jitter
    buffer releases it. aiortc's default, 4, smooths playback at a cost of ~80 ms; the
    server does not play the input (VAD and STT take it as it comes) and the buffer waits
    for a missing packet whatever the value, so 1 loses no robustness and hears the end of
    speech ~60 ms sooner (docs/benchmarks.md, WebRTC)."""
    udp_port_min: int = 0
    """UDP port range of the host ICE candidates (:mod:`.ice_ports`); 0 and 0: any port."""
    udp_port_max: int = 0

    def rtc_configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(
                urls=url,
                username=self.turn_username if url.startswith("turn") else None,
                credential=self.turn_credential if url.startswith("turn") else None,
            )
            for url in self.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)


# --------------------------------------------------------------------------- events


class CallChannel:
    """The runner's channel for a call: the data channel plus attached sideband sockets."""

    def __init__(
        self, settings: WebRTCSettings, send_deadline_s: float, on_close: Callable[[str], None]
    ) -> None:
        self._settings = settings
        self._send_deadline_s = send_deadline_s
        self._on_close = on_close
        self.data_channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=settings.max_pending_events)
        self.sidebands: set[Channel] = set()
        self._sending = asyncio.Lock()

    def attach_data_channel(self, dc: RTCDataChannel) -> None:
        self.data_channel = dc

        def flush() -> None:
            while self._pending and dc.readyState == "open":
                dc.send(self._pending.popleft())

        if dc.readyState == "open":
            flush()
        else:
            dc.on("open", flush)

    async def attach_sideband(self, sideband: Channel, first: Callable[[], str]) -> None:
        """Add a sideband socket; ``first()`` is sent to it alone before any call event, so
        it sees no event twice and misses none from then on."""
        async with self._sending:
            async with asyncio.timeout(self._send_deadline_s):
                await sideband.send_text(first())
            self.sidebands.add(sideband)

    async def send_text(self, text: str) -> None:
        async with self._sending:
            await self._send_text(text)

    async def _send_text(self, text: str) -> None:
        dc = self.data_channel
        if dc is not None and dc.readyState == "open":
            if dc.bufferedAmount > self._settings.max_data_channel_buffer_bytes:
                raise ConnectionError("the data channel peer is not reading events")
            dc.send(text)
        elif dc is None or dc.readyState == "connecting":
            self._pending.append(text)
        for sideband in list(self.sidebands):
            try:
                async with asyncio.timeout(self._send_deadline_s):
                    await sideband.send_text(text)
            except Exception:
                log.info("a sideband socket stopped reading; detached")
                self.sidebands.discard(sideband)

    async def close(self, code: int, reason: str) -> None:
        self._on_close(reason or f"session closed ({code})")

    async def close_sidebands(self, code: int, reason: str) -> None:
        """The call ended: close every sideband socket with ``code`` and ``reason``."""
        for sideband in list(self.sidebands):
            with contextlib.suppress(Exception):
                await sideband.close(code, reason)
        self.sidebands.clear()


# --------------------------------------------------------------------------- the call


_live_peers: set[RTCPeerConnection] = set()


def _set_input_jitter(receiver: Any, frames: int) -> None:
    """Size the receiver's audio jitter buffer. aiortc has no public knob for it, so this
    replaces its (name-mangled) buffer before any packet arrives; on an aiortc without
    that attribute the default stays and a warning says so."""
    from aiortc.jitterbuffer import JitterBuffer

    attribute = "_RTCRtpReceiver__jitter_buffer"
    if frames == 4:
        return  # aiortc's own default
    if not isinstance(getattr(receiver, attribute, None), JitterBuffer):
        log.warning("this aiortc has no audio jitter buffer to resize; input_jitter_frames ignored")
        return
    setattr(receiver, attribute, JitterBuffer(capacity=16, prefetch=max(1, min(frames, 15))))


def live_peer_connections() -> int:
    """Peer connections opened by calls and not yet closed (for leak checks)."""
    return len(_live_peers)


class WebRTCCall:
    """One call: peer connection, session runner, audio pumps; see the module docstring."""

    def __init__(
        self,
        call_id: str,
        runner_factory: Callable[[CallChannel, OutputHook], SessionRunner],
        *,
        settings: WebRTCSettings,
        send_deadline_s: float,
        on_closed: Callable[[WebRTCCall], None],
    ) -> None:
        self.id = call_id
        self.settings = settings
        self.channel = CallChannel(settings, send_deadline_s, self.request_close)
        self.playback = CallPlayback(max_queued_s=settings.max_output_audio_s)
        self.runner = runner_factory(self.channel, self.playback)
        self.playback.bind(self.runner)
        self.track = self.playback.track
        self.pc = RTCPeerConnection(settings.rtc_configuration())
        _live_peers.add(self.pc)
        self._on_closed = on_closed
        self._tasks = CallTasks(call_id)
        self._spawn = self._tasks.spawn
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(settings.max_inbound_events)
        self._close_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.last_media = time.monotonic()

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer, start the session, return the SDP answer (host candidates)."""
        pc = self.pc

        @pc.on("datachannel")
        def on_datachannel(dc: RTCDataChannel) -> None:
            self.channel.attach_data_channel(dc)

            @dc.on("message")
            def on_message(message: str | bytes) -> None:
                try:
                    self._inbox.put_nowait(message)
                except asyncio.QueueFull:
                    log.warning("call %s: client events flood the data channel", self.id)
                    self.request_close("client events arrive faster than they are handled")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._pump_input(track), "audio-in")

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.request_close(f"peer connection {pc.connectionState}")

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                transceiver.sender.replaceTrack(self.track)
                if transceiver.direction == "recvonly":
                    transceiver.direction = "sendrecv"
                _set_input_jitter(transceiver.receiver, self.settings.input_jitter_frames)
                break
        if self.settings.udp_port_min:
            # The ICE gatherers exist now (setRemoteDescription) and gather in
            # setLocalDescription: their host candidates go on the port range.
            gatherers = {id(g): g for g in (
                *(t.receiver.transport.transport.iceGatherer for t in pc.getTransceivers()),
                *((pc.sctp.transport.transport.iceGatherer,) if pc.sctp else ()),
            )}
            restrict_host_ports(gatherers.values(), self.settings.udp_port_min,
                                self.settings.udp_port_max)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        await self.runner.start()
        self._spawn(self._consume_events(), "events-in")
        self._spawn(self._watch_connect(), "ice-watch")
        return pc.localDescription.sdp

    async def _consume_events(self) -> None:
        while True:
            message = await self._inbox.get()
            if isinstance(message, str):
                await self.runner.receive_text(message)
            else:
                self.runner.receive_binary()

    async def _watch_connect(self) -> None:
        try:
            async with asyncio.timeout(self.settings.ice_connect_timeout_s):
                while self.pc.connectionState != "connected":
                    changed = asyncio.Event()
                    self.pc.once("connectionstatechange", changed.set)
                    await changed.wait()
        except TimeoutError:
            self.request_close(
                f"the peer did not connect within {self.settings.ice_connect_timeout_s:g} s"
            )

    async def _pump_input(self, track: MediaStreamTrack) -> None:
        resampler: av.AudioResampler | None = None
        fmt = ""
        try:
            while True:
                async with asyncio.timeout(self.settings.media_timeout_s):
                    frame = await track.recv()
                self.last_media = time.monotonic()
                wanted = self.runner.session.config.audio.input.format.type
                if resampler is None or wanted != fmt:
                    fmt = wanted
                    resampler = av.AudioResampler(format="s16", layout="mono", rate=format_rate(fmt))
                if not isinstance(frame, av.AudioFrame):
                    continue
                pcm = b"".join(
                    bytes(out.planes[0])[: out.samples * 2] for out in resampler.resample(frame)
                )
                if pcm:
                    self.runner.feed_audio(encode_from_pcm16(pcm, fmt))
        except TimeoutError:
            self.request_close(f"no audio from the peer for {self.settings.media_timeout_s:g} s")
        except MediaStreamError:
            self.request_close("the peer's audio track ended")

    # ------------------------------------------------------------------ ending

    def request_close(self, reason: str) -> None:
        """End the call (idempotent); :attr:`closed` is set once everything has stopped."""
        if self._close_task is None:
            self.close_reason = reason
            self._close_task = asyncio.create_task(self._close(), name=f"{self.id}:close")

    async def _close(self) -> None:
        log.info("call %s ending: %s", self.id, self.close_reason)
        try:
            await self._tasks.cancel_all()
            await self.runner.stop()
            self.track.stop()
            await self.channel.close_sidebands(1000, "call ended")
            with contextlib.suppress(Exception):
                await self.pc.close()
        finally:
            _live_peers.discard(self.pc)
            self._on_closed(self)
            self.closed.set()

    async def aclose(self, reason: str) -> None:
        self.request_close(reason)
        await self.closed.wait()

"""A call's player: the outbound audio track and the output hook that feeds it.

On WebRTC and SIP calls the server, not the client, plays the assistant's audio. The
session core decides everything about it (core/playback.py): it hands audio over as
:class:`~rtgate.core.effects.PlayAudio` (PCM16 at the track's rate, in place of
``response.output_audio.delta``), says when a response's audio is complete
(:class:`~rtgate.core.effects.FinishPlayback`), and decides barge-in and the client's
``output_audio_buffer.clear`` itself (:class:`~rtgate.core.effects.ClearOutputAudio`, then
``output_audio_buffer.cleared`` and the truncation to what was played). This module only
carries that out:

* :class:`OutputAudioTrack` paces queued audio as 20 ms PCM16 frames (silence between
  responses, so the RTP clock keeps running) and reports what it plays.
* :class:`CallPlayback` is the session runner's output hook for a call (WebRTC and SIP):
  it queues, ends and drops audio on the core's effects and reports the track's progress
  back to the core (:meth:`Session.on_playback_started`, :meth:`Session.on_audio_played`,
  :meth:`Session.on_playback_stopped`), whose events it applies.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..core import effects as fx
from ..core.session import Output
from ..pipeline.base import WIRE_SAMPLE_RATE

if TYPE_CHECKING:
    from .connection import SessionRunner

log = logging.getLogger("rtgate.webrtc")

FRAME_MS = 20


class PlaybackListener(Protocol):
    """What :class:`OutputAudioTrack` reports, synchronously, as it takes audio for a frame."""

    def started(self, response_id: str) -> None: ...

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None: ...

    def stopped(self, response_id: str) -> None: ...


class OutputAudioTrack(MediaStreamTrack):
    """The call's outbound audio: queued response audio, paced as 20 ms PCM16 frames.

    Reports to its listener when a response's first audio goes out (``started``), every
    piece of a part it takes for a frame (``played``), and when a response's end marker
    (:meth:`end`) is reached (``stopped``). Silence is sent between responses.
    """

    kind = "audio"

    def __init__(
        self,
        listener: PlaybackListener,
        *,
        sample_rate: int = WIRE_SAMPLE_RATE,
        max_queued_s: float = 600.0,
    ) -> None:
        super().__init__()
        self._listener = listener
        self.sample_rate = sample_rate
        self._samples = sample_rate * FRAME_MS // 1000
        self._max_bytes = int(max_queued_s * sample_rate) * 2
        # (response_id, item_id, content_index, pcm); pcm None is the response's end marker.
        self._queue: deque[tuple[str, str, int, bytes | None]] = deque()
        self._queued_bytes = 0
        self._playing: str | None = None
        self._start: float | None = None
        self._timestamp = 0
        self.frames_with_audio = 0

    def push(self, response_id: str, item_id: str, content_index: int, pcm: bytes) -> None:
        """Queue ``pcm`` (at :attr:`sample_rate`) of one assistant audio part."""
        if self._queued_bytes + len(pcm) > self._max_bytes:
            log.warning("output audio queue full (%d bytes); audio dropped", self._queued_bytes)
            return
        self._queue.append((response_id, item_id, content_index, pcm))
        self._queued_bytes += len(pcm)

    def end(self, response_id: str) -> None:
        """No more audio will come for ``response_id``: ``stopped`` once it has played."""
        self._queue.append((response_id, "", 0, None))

    def clear(self) -> None:
        """Drop all queued audio now."""
        self._queue.clear()
        self._queued_bytes = 0
        self._playing = None

    def _take(self, nbytes: int) -> bytes:
        out = bytearray()
        while len(out) < nbytes and self._queue:
            rid, item_id, index, pcm = self._queue[0]
            if pcm is None:
                self._queue.popleft()
                self._stopped(rid)
                continue
            if self._playing != rid:
                self._playing = rid
                self._listener.started(rid)
            need = nbytes - len(out)
            chunk = pcm[:need]
            out += chunk
            self._listener.played(rid, item_id, index, len(chunk))
            if len(pcm) > need:
                self._queue[0] = (rid, item_id, index, pcm[need:])
            else:
                self._queue.popleft()
            self._queued_bytes -= len(chunk)
        # An end marker right behind the last audio: report it with this frame.
        if self._queue and self._queue[0][3] is None:
            self._stopped(self._queue.popleft()[0])
        return bytes(out)

    def _stopped(self, response_id: str) -> None:
        self._playing = None
        self._listener.stopped(response_id)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += self._samples
            # Real-time pacing: this sleep keeps the RTP clock, it orders nothing.
            wait = self._start + self._timestamp / self.sample_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm = self._take(self._samples * 2)
        if pcm:
            self.frames_with_audio += 1
        pcm = pcm.ljust(self._samples * 2, b"\0")
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = self.sample_rate
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        return frame


class CallPlayback:
    """A call's output hook (:class:`~rtgate.transport.connection.OutputHook`) and the
    track's listener; see the module docstring. :meth:`bind` it to the runner before the
    session starts (that tells the core the track's rate)."""

    def __init__(self, *, max_queued_s: float = 600.0, sample_rate: int = WIRE_SAMPLE_RATE) -> None:
        # sample_rate: the track's frames (a SIP call plays 8 kHz, so G.711 needs no resampling)
        self.track = OutputAudioTrack(self, sample_rate=sample_rate, max_queued_s=max_queued_s)
        self._runner: SessionRunner | None = None

    def bind(self, runner: SessionRunner) -> None:
        self._runner = runner
        playback = runner.session.playback
        assert playback is not None, "a call's session is created with plays_audio=True"
        playback.sample_rate = self.track.sample_rate

    @property
    def runner(self) -> SessionRunner:
        assert self._runner is not None, "CallPlayback.bind() was not called"
        return self._runner

    def __call__(self, out: Output) -> list[Output]:
        if isinstance(out, fx.PlayAudio):
            self.track.push(out.response_id, out.item_id, out.content_index, out.pcm)
            return []
        if isinstance(out, fx.FinishPlayback):
            self.track.end(out.response_id)
            return []
        if isinstance(out, fx.ClearOutputAudio):
            self.track.clear()
            return []
        return [out]

    # ------------------------------------------------------------------ track progress

    def started(self, response_id: str) -> None:
        self.runner.apply(self.runner.session.on_playback_started(response_id))

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        self.runner.session.on_audio_played(response_id, item_id, content_index, nbytes)

    def stopped(self, response_id: str) -> None:
        self.runner.apply(self.runner.session.on_playback_stopped(response_id))

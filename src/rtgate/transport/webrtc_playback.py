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
  responses, so the RTP clock keeps running) and reports what it plays (the queue and
  pacer are :mod:`.playout`'s, shared with the relayed SIP call).
* :class:`CallPlayback` is the session runner's output hook for a call (WebRTC and SIP):
  it queues, ends and drops audio on the core's effects and reports the track's progress
  back to the core (:meth:`Session.on_playback_started`, :meth:`Session.on_audio_played`,
  :meth:`Session.on_playback_stopped`), whose events it applies.
"""

from __future__ import annotations

import fractions
from typing import TYPE_CHECKING

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..core import effects as fx
from ..core.session import Output
from ..pipeline.base import WIRE_SAMPLE_RATE
from .playout import FramePacer, PlayoutListener, PlayoutQueue

if TYPE_CHECKING:
    from .connection import SessionRunner

FRAME_MS = 20


class OutputAudioTrack(MediaStreamTrack):
    """The call's outbound audio: queued response audio (a :class:`.playout.PlayoutQueue`
    reporting to ``listener``), paced as 20 ms PCM16 frames. Silence is sent between
    responses so the RTP clock keeps running.
    """

    kind = "audio"

    def __init__(
        self,
        listener: PlayoutListener,
        *,
        sample_rate: int = WIRE_SAMPLE_RATE,
        max_queued_s: float = 600.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self._samples = sample_rate * FRAME_MS // 1000
        self.queue = PlayoutQueue(listener, max_bytes=int(max_queued_s * sample_rate) * 2)
        # No lag limit: the frames' timestamps run on, so the pace catches up after a stall.
        self._pacer = FramePacer(FRAME_MS / 1000)
        self._timestamp = -self._samples
        self.frames_with_audio = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._timestamp += self._samples
        await self._pacer.wait()
        pcm = self.queue.take(self._samples * 2)
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
        queue = self.track.queue
        if isinstance(out, fx.PlayAudio):
            queue.push(out.response_id, out.item_id, out.content_index, out.pcm)
            return []
        if isinstance(out, fx.FinishPlayback):
            queue.end(out.response_id)
            return []
        if isinstance(out, fx.ClearOutputAudio):
            queue.clear()
            return []
        return [out]

    # ------------------------------------------------------------------ track progress

    def started(self, response_id: str) -> None:
        self.runner.apply(self.runner.session.on_playback_started(response_id))

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        self.runner.session.on_audio_played(response_id, item_id, content_index, nbytes)

    def stopped(self, response_id: str) -> None:
        self.runner.apply(self.runner.session.on_playback_stopped(response_id))

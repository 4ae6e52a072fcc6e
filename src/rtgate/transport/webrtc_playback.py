"""Server-owned playback of a WebRTC call: the outbound track and what it has played.

On WebRTC the server, not the client, plays the assistant's audio (docs/protocol.md,
Server events and Event sequences: Barge-in), so it knows how much of each item the user heard:

* :class:`OutputAudioTrack` paces queued response audio as 20 ms frames and counts, per
  assistant item, the audio pushed and the audio played.
* :class:`CallPlayback` is the session runner's output hook for a call. It turns
  ``response.output_audio.delta`` into queued audio (the delta is not sent), reports
  ``output_audio_buffer.started``/``stopped``, and on a cut-off — barge-in, or the client's
  ``output_audio_buffer.clear`` — drops queued audio at once, sends
  ``output_audio_buffer.cleared``, and **truncates the assistant item to what was played**
  (``conversation.item.truncated``, the unheard transcript dropped), as the cloud does and
  as a WebSocket client would with ``conversation.item.truncate``.

Truncation rules: a response cut while it is still generating is truncated when its
``response.done`` (status ``cancelled``) goes out, so the item is final; a response that
had finished generating but was still playing is truncated at once. Played time is
rounded down, so the conversation never claims audio the user did not hear.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..audio import decode_to_pcm16, format_rate, resample_pcm16
from ..core import effects as fx
from ..core.session import Output
from ..pipeline.base import WIRE_SAMPLE_RATE
from ..protocol.client_events import ItemTruncate

if TYPE_CHECKING:
    from .connection import SessionRunner

log = logging.getLogger("rtgate.webrtc")

FRAME_MS = 20


@dataclass(slots=True)
class _ItemAudio:
    """One assistant audio part as the track sees it."""

    item_id: str
    content_index: int
    pushed_bytes: int = 0
    played_bytes: int = 0
    wire_ms: float = 0.0
    """Length of the audio in the item's own format (the conversation's view)."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Audio dropped from playback: which response, and how much of each part was played."""

    response_id: str
    played: list[tuple[str, int, int]] = field(default_factory=list)
    """``(item_id, content_index, audio_end_ms)`` for every part with unplayed audio."""


class OutputAudioTrack(MediaStreamTrack):
    """The call's outbound audio: queued response audio, paced as 20 ms PCM16 frames.

    ``on_event(type, response_id)`` reports ``output_audio_buffer.started`` when a
    response's first audio goes out and ``…stopped`` when its end marker is reached.
    Silence is sent between responses so the RTP clock keeps running.
    """

    kind = "audio"

    def __init__(
        self,
        on_event: Callable[[str, str], None],
        *,
        sample_rate: int = WIRE_SAMPLE_RATE,
        max_queued_s: float = 600.0,
    ) -> None:
        super().__init__()
        self._on_event = on_event
        self.sample_rate = sample_rate
        self._samples = sample_rate * FRAME_MS // 1000
        self._max_bytes = int(max_queued_s * sample_rate) * 2
        # (response_id, part, pcm); pcm None is the response's end marker.
        self._queue: deque[tuple[str, _ItemAudio | None, bytes | None]] = deque()
        self._queued_bytes = 0
        self._playing: str | None = None
        self._ended: set[str] = set()
        self._parts: dict[str, dict[tuple[str, int], _ItemAudio]] = {}
        self._start: float | None = None
        self._timestamp = 0
        self.frames_with_audio = 0

    @property
    def playing(self) -> str | None:
        """The response whose audio is playing or queued, if any."""
        if self._playing is not None:
            return self._playing
        return self._queue[0][0] if self._queue else None

    def push(
        self, response_id: str, pcm: bytes, *, item_id: str = "", content_index: int = 0,
        wire_ms: float | None = None,
    ) -> None:
        """Queue ``pcm`` (at :attr:`sample_rate`) of one assistant audio part."""
        if self._queued_bytes + len(pcm) > self._max_bytes:
            log.warning("output audio queue full (%d bytes); audio dropped", self._queued_bytes)
            return
        parts = self._parts.setdefault(response_id, {})
        part = parts.get((item_id, content_index))
        if part is None:
            part = parts[(item_id, content_index)] = _ItemAudio(item_id, content_index)
        part.pushed_bytes += len(pcm)
        part.wire_ms += len(pcm) / (2 * self.sample_rate) * 1000 if wire_ms is None else wire_ms
        self._queue.append((response_id, part, pcm))
        self._queued_bytes += len(pcm)

    def end(self, response_id: str) -> None:
        """No more audio will come for ``response_id``: ``stopped`` once it has played."""
        if response_id in self._ended:
            return
        self._ended.add(response_id)
        if self._playing == response_id or any(r == response_id for r, _, _ in self._queue):
            self._queue.append((response_id, None, None))
        else:
            self._parts.pop(response_id, None)

    def clear(self) -> Cut | None:
        """Drop all queued audio now; returns what was cut, if anything was playing."""
        playing = self.playing
        self._queue.clear()
        self._queued_bytes = 0
        self._playing = None
        if playing is None:
            return None
        cut = Cut(playing)
        for part in self._parts.get(playing, {}).values():
            if part.pushed_bytes > part.played_bytes:
                played_ms = part.played_bytes / (2 * self.sample_rate) * 1000
                cut.played.append(
                    (part.item_id, part.content_index, math.floor(min(played_ms, part.wire_ms)))
                )
        self._parts.clear()
        return cut

    def _stopped(self, response_id: str) -> None:
        self._playing = None
        self._parts.pop(response_id, None)
        self._on_event("output_audio_buffer.stopped", response_id)

    def _take(self, nbytes: int) -> bytes:
        out = bytearray()
        while len(out) < nbytes and self._queue:
            rid, part, pcm = self._queue[0]
            if pcm is None:
                self._queue.popleft()
                self._stopped(rid)
                continue
            if self._playing != rid:
                self._playing = rid
                self._on_event("output_audio_buffer.started", rid)
            need = nbytes - len(out)
            chunk = pcm[:need]
            out += chunk
            if part is not None:
                part.played_bytes += len(chunk)
            if len(pcm) > need:
                self._queue[0] = (rid, part, pcm[need:])
            else:
                self._queue.popleft()
            self._queued_bytes -= len(chunk)
        # An end marker right behind the last audio: report it with this frame.
        if self._queue and self._queue[0][2] is None:
            self._stopped(self._queue.popleft()[0])
        return bytes(out)

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
    """A call's output hook (:class:`~rtgate.transport.connection.OutputHook`); see the
    module docstring. :meth:`bind` it to the runner before the session starts."""

    def __init__(self, *, max_queued_s: float = 600.0, sample_rate: int = WIRE_SAMPLE_RATE) -> None:
        # sample_rate: the track's frames (a SIP call plays 8 kHz, so G.711 needs no resampling)
        self.track = OutputAudioTrack(self._on_track_event, sample_rate=sample_rate,
                                      max_queued_s=max_queued_s)
        self._runner: SessionRunner | None = None
        self._pending_cuts: dict[str, Cut] = {}
        self._generated: set[str] = set()
        """Responses whose ``response.done`` has gone out while their audio still plays."""

    def bind(self, runner: SessionRunner) -> None:
        self._runner = runner

    @property
    def runner(self) -> SessionRunner:
        assert self._runner is not None, "CallPlayback.bind() was not called"
        return self._runner

    def __call__(self, out: Output) -> list[Output]:
        if isinstance(out, fx.ClearOutputAudio):
            cut = self.track.clear()
            if cut is not None:
                self._pending_cuts[cut.response_id] = cut
            return []
        if not isinstance(out, dict):
            return [out]
        kind = out["type"]
        if kind == "response.output_audio.delta":
            self._play(out)
            return []
        if kind == "response.done":
            return self._on_response_done(out)
        if kind == "output_audio_buffer.cleared":
            return self._on_cleared(out)
        if kind == "input_audio_buffer.speech_started":
            return [out, *self._barge_in_after_response()]
        return [out]

    # ------------------------------------------------------------------ playback

    def _play(self, event: dict[str, Any]) -> None:
        fmt = self.runner.session.config.audio.output.format.type  # type: ignore[union-attr]
        pcm = decode_to_pcm16(base64.b64decode(event["delta"]), fmt)
        rate = format_rate(fmt)
        wire_ms = len(pcm) / (2 * rate) * 1000
        if rate != self.track.sample_rate:
            pcm = resample_pcm16(pcm, rate, self.track.sample_rate)
        self.track.push(event["response_id"], pcm, item_id=event.get("item_id", ""),
                        content_index=event.get("content_index", 0), wire_ms=wire_ms)

    def _on_track_event(self, kind: str, response_id: str) -> None:
        if kind == "output_audio_buffer.stopped":
            self._generated.discard(response_id)
        session = self.runner.session
        self.runner.apply([{"type": kind, "event_id": session.ids.event(), "response_id": response_id}])

    # ------------------------------------------------------------------ cut-offs

    def _on_response_done(self, event: dict[str, Any]) -> list[Output]:
        response = event["response"]
        self.track.end(response["id"])
        if self.track.playing == response["id"]:
            self._generated.add(response["id"])
        cut = self._pending_cuts.pop(response["id"], None)
        if cut is None or response.get("status") != "cancelled":
            return [event]  # an uncancelled response went on playing after a clear
        return [event, *self._truncate(cut)]

    def _on_cleared(self, event: dict[str, Any]) -> list[Output]:
        """The client's ``output_audio_buffer.clear`` with no active response: audio of a
        finished response may still be playing; cut it and truncate now."""
        cut = self.track.clear()
        self._generated.clear()
        if cut is None:
            return [event]
        if not event.get("response_id"):
            event = {**event, "response_id": cut.response_id}
        return [event, *self._truncate(cut)]

    def _barge_in_after_response(self) -> list[Output]:
        """The user speaks while a finished response's audio still plays: cut it off.

        The core handles an active response itself (cancel + ``cleared``, in the same batch
        of outputs as ``speech_started``); this covers audio the server is still playing
        after that response's ``response.done`` went out. (The core's state cannot tell
        the two apart here: by the time the hook sees ``speech_started`` the core has
        already cancelled the active response.)
        """
        session = self.runner.session
        playing = self.track.playing
        if playing is None or playing not in self._generated:
            return []
        td = session.config.audio.input.turn_detection
        if td is None or not getattr(td, "interrupt_response", True):
            return []
        cut = self.track.clear()
        self._generated.clear()
        cleared: dict[str, Any] = {"type": "output_audio_buffer.cleared",
                                   "event_id": session.ids.event(), "response_id": playing}
        return [cleared, *(self._truncate(cut) if cut is not None else [])]

    def _truncate(self, cut: Cut) -> list[Output]:
        """``conversation.item.truncated`` for each part of ``cut``, through the core's own
        truncate rule (audio and the unheard transcript dropped)."""
        outputs: list[Output] = []
        session = self.runner.session
        for item_id, content_index, end_ms in cut.played:
            event = ItemTruncate(type="conversation.item.truncate", item_id=item_id,
                                 content_index=content_index, audio_end_ms=end_ms)
            result = session.handle(event, time.time())
            if any(isinstance(o, dict) and o["type"] == "error" for o in result):
                # The item is gone (deleted) or was never stored: nothing to truncate.
                log.debug("session %s: no truncation of %s", session.id, item_id)
                continue
            outputs += result
        return outputs

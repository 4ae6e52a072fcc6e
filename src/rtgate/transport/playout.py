"""The parts every call's outbound audio shares: a playout queue and a frame pacer.

A WebRTC call's track and a SIP call's RTP stream (local or relayed) all play queued
answer audio as fixed 20 ms frames in real time and need to know what went out:

* :class:`PlayoutQueue` holds queued audio per response part, hands it out frame by frame
  and reports, synchronously as it does, what it plays (:class:`PlayoutListener`): the
  session core's account of playback (core/playback.py) or a relayed call's truncation
  count are fed from there.
* :class:`FramePacer` waits for each frame's slot on an absolute schedule (no drift).

Both are format-agnostic: bytes are PCM16 on a track, G.711 on a relayed SIP call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("rtgate.playout")


class PlayoutListener(Protocol):
    """What :class:`PlayoutQueue` reports as it takes audio for a frame."""

    def started(self, response_id: str) -> None:
        """The first audio of ``response_id`` (since it last stopped or was cleared) went out."""

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        """``nbytes`` more of one part went out."""

    def stopped(self, response_id: str) -> None:
        """The end marker of ``response_id`` (:meth:`PlayoutQueue.end`) was reached."""


class PlayoutQueue:
    """Queued audio of assistant parts, taken frame by frame; see the module docstring."""

    def __init__(self, listener: PlayoutListener, *, max_bytes: int) -> None:
        self._listener = listener
        self._max_bytes = max_bytes
        # (response_id, item_id, content_index, audio); audio None is the response's end marker.
        # Views, so that taking a frame off a long chunk does not copy the rest of it.
        self._queue: deque[tuple[str, str, int, memoryview | None]] = deque()
        self.queued_bytes = 0
        self._playing: str | None = None
        self._dropping = False
        """Audio is being dropped (logged once per run of drops, not per chunk)."""

    def __bool__(self) -> bool:
        return bool(self._queue)

    def head(self) -> tuple[str, str, int] | None:
        """``(response_id, item_id, content_index)`` of what plays next, if anything is queued."""
        return self._queue[0][:3] if self._queue else None

    def push(self, response_id: str, item_id: str, content_index: int, audio: bytes) -> bool:
        """Queue ``audio`` of one part; past ``max_bytes`` queued it is dropped (``False``)."""
        if self.queued_bytes + len(audio) > self._max_bytes:
            if not self._dropping:
                log.warning("output audio queue full (%d bytes); audio dropped", self.queued_bytes)
            self._dropping = True
            return False
        self._dropping = False
        self._queue.append((response_id, item_id, content_index, memoryview(audio)))
        self.queued_bytes += len(audio)
        return True

    def end(self, response_id: str) -> None:
        """No more audio will come for ``response_id``: ``stopped`` once it has played."""
        self._queue.append((response_id, "", 0, None))

    def clear(self) -> None:
        """Drop everything queued now."""
        self._queue.clear()
        self.queued_bytes = 0
        self._playing = None

    def take(self, nbytes: int) -> bytes:
        """Up to ``nbytes`` of queued audio for the next frame (the caller pads it)."""
        out = bytearray()
        while len(out) < nbytes and self._queue:
            rid, item_id, index, audio = self._queue[0]
            if audio is None:
                self._queue.popleft()
                self._stopped(rid)
                continue
            if self._playing != rid:
                self._playing = rid
                self._listener.started(rid)
            need = nbytes - len(out)
            chunk = audio[:need]
            out += chunk
            self._listener.played(rid, item_id, index, len(chunk))
            if len(audio) > need:
                self._queue[0] = (rid, item_id, index, audio[need:])
            else:
                self._queue.popleft()
            self.queued_bytes -= len(chunk)
        # An end marker right behind the last audio: report it with this frame.
        if self._queue and self._queue[0][3] is None:
            self._stopped(self._queue.popleft()[0])
        return bytes(out)

    def _stopped(self, response_id: str) -> None:
        self._playing = None
        self._listener.stopped(response_id)


class FramePacer:
    """Waits for each frame's slot: the first at once, then one every ``frame_s`` on an
    absolute schedule. Past ``max_lag_s`` behind (the loop stalled) the schedule restarts
    from now rather than bursting to catch up; ``None`` always catches up (an RTP clock
    that must stay aligned with the frames' timestamps)."""

    def __init__(self, frame_s: float, *, max_lag_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.frame_s = frame_s
        self._max_lag_s = max_lag_s
        self._clock = clock
        self._due: float | None = None

    async def wait(self) -> None:
        now = self._clock()
        if self._due is None:
            self._due = now
            return
        self._due += self.frame_s
        if self._max_lag_s is not None and now - self._due > self._max_lag_s:
            self._due = now
        if self._due > now:
            # Real-time pacing: this sleep keeps the media clock, it orders nothing.
            await asyncio.sleep(self._due - now)

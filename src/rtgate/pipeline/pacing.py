"""How far an answer's generation may run ahead of the client's playback.

A client plays a response's audio in real time from its first chunk on. Generating the
whole answer at once spends the model on words nobody hears for seconds (and never
hears, after a barge-in) while another caller waits for a first word. :class:`Playback`
follows one response's audio as it is sent and tells the engines two things:

* :meth:`Playback.due` — when the next piece is needed: the moment the answer was
  asked for (the turn's end) until its first audio is out, then the moment the audio
  already sent runs out, less ``margin_s`` for the work itself (the due time of its
  lane request, :mod:`~rtgate.pipeline.scheduler`);
* :meth:`Playback.wait_ready` — returns once less than ``ahead_s`` of audio is left
  to play, so generation stays a bounded margin ahead of what the client hears.

The client's clock is modelled, not observed: audio starts playing when sent and plays
at real time; when the client has run dry (everything sent has played), the next chunk
starts playing when it is sent. Time is injected (:data:`Clock`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PacingLimits:
    ahead_s: float = 4.0
    """Generate more only while less than this much audio is left to play."""
    margin_s: float = 1.5
    """A continuation is due this long before the client would run out of audio."""


class Playback:
    """The modelled playback position of one response; see the module docstring."""

    def __init__(
        self, limits: PacingLimits | None = None, *, clock: Clock = time.monotonic, asked: float | None = None
    ) -> None:
        """``asked``: when the answer was asked for (default: now); for a detected turn,
        its commit, so that a turn whose transcript took longer is not served after
        turns that ended later."""
        self.limits = limits or PacingLimits()
        self._clock = clock
        self._asked = clock() if asked is None else asked
        self._end: float | None = None
        self._listeners: list[Callable[[float], None]] = []
        self.sent_s = 0.0
        """Seconds of audio sent so far."""
        self.waited_s = 0.0
        """Seconds :meth:`wait_ready` has waited."""

    def sent(self, seconds: float) -> None:
        """``seconds`` of audio went to the client now."""
        if seconds <= 0:
            return
        now = self._clock()
        start = now if self._end is None or self._end < now else self._end
        self._end = start + seconds
        self.sent_s += seconds

    def buffered_s(self) -> float:
        """Audio sent but not yet played, in seconds."""
        if self._end is None:
            return 0.0
        return max(0.0, self._end - self._clock())

    def due(self) -> float:
        """When the next piece of this answer is needed (monotonic seconds)."""
        if self._end is None:
            # Fixed, not "now": first answers are served in the order they were asked
            # for, and a running one never looks less urgent than one that waits.
            return self._asked
        return self._end - self.limits.margin_s

    def ready_in(self) -> float:
        """Seconds until more output is wanted (0: now)."""
        return max(0.0, self.buffered_s() - self.limits.ahead_s)

    async def wait_ready(self) -> None:
        """Wait until less than ``ahead_s`` of audio is left to play."""
        # A timer, not an ordering device: the wait is the client's playback time.
        while (delay := self.ready_in()) > 0:
            self.waited_s += delay
            for listener in self._listeners:
                listener(delay)
            await asyncio.sleep(delay)

    def on_wait(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(seconds)`` whenever :meth:`wait_ready` is about to wait that
        long (a backend's deadline does not run while the client is still playing)."""
        self._listeners.append(listener)

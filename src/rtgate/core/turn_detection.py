"""Turn detection over VAD speech probabilities (``server_vad`` / ``semantic_vad``;
docs/protocol.md, Session objects, and docs/turn-detection.md).

The detector is a two-state machine fed one probability per VAD frame, positioned on the
session's audio clock (milliseconds of input audio since the session started), and, for
``semantic_vad`` with a turn-end model, the model's verdicts on the turn so far:

==========  =========================================  =========  ===========================
state       input                                      next       emits
==========  =========================================  =========  ===========================
SILENT      p ≥ threshold                              SPEAKING   SpeechStarted(start − prefix)
SILENT      p < threshold                              SILENT     —
SPEAKING    p ≥ threshold − hysteresis                 SPEAKING   — (silence timer reset; a
                                                                  query in flight is void)
SPEAKING    quiet for ≥ silence_duration_ms            SILENT     SpeechStopped(end)
SPEAKING    quiet for ≥ pause_ms, not yet asked        SPEAKING   TurnQuery(id) (semantic only)
SPEAKING    verdict(id) ≥ turn-end threshold           SILENT     SpeechStopped(last frame end)
SPEAKING    verdict(id) < turn-end threshold           SPEAKING   — (wait for the silence window)
any         verdict for a void or older query          same       —
==========  =========================================  =========  ===========================

A *query* asks the edge to run the turn-end model on the audio of the turn so far (one per
pause: speech that resumes voids it, and the next pause asks again); its verdict, a
probability that the turn is complete, comes back through :meth:`TurnDetector.verdict`.
For ``semantic_vad`` the silence window is the longest wait: the turn ends then whatever
the model said (or if it never answered). ``server_vad`` never queries.

``SpeechStopped.audio_end_ms`` includes the silence waited, as the cloud reports it;
``speech_end_ms`` is where the voice actually stopped (used by latency metrics).
``semantic_vad`` without a turn-end model (not installed) keeps a plain silence window by
eagerness (:data:`SEMANTIC_SILENCE_MS`). The eagerness mapping with the model,
:data:`SEMANTIC_TURN_END`, and how it was chosen: docs/turn-detection.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..protocol.session import SemanticVad, ServerVad

HYSTERESIS: Final = 0.15
"""While speaking, a frame counts as speech down to ``threshold - HYSTERESIS`` (Silero's rule)."""

SEMANTIC_SILENCE_MS: Final[dict[str, int]] = {"high": 300, "auto": 700, "medium": 700, "low": 1500}
"""Silence window of ``semantic_vad`` by eagerness when no turn-end model is installed."""

SEMANTIC_THRESHOLD: Final = 0.5
SEMANTIC_PREFIX_MS: Final = 300


@dataclass(frozen=True, slots=True)
class TurnEndParams:
    """How ``semantic_vad`` uses the turn-end model (one eagerness)."""

    pause_ms: int
    """Quiet after speech that asks the model whether the turn is complete."""
    threshold: float
    """Model probability from which the turn ends at once."""
    max_wait_ms: int
    """Quiet after which the turn ends whatever the model said."""


SEMANTIC_TURN_END: Final[dict[str, TurnEndParams]] = {
    "high": TurnEndParams(pause_ms=64, threshold=0.5, max_wait_ms=500),
    "auto": TurnEndParams(pause_ms=64, threshold=0.8, max_wait_ms=1000),
    "medium": TurnEndParams(pause_ms=64, threshold=0.8, max_wait_ms=1000),
    "low": TurnEndParams(pause_ms=96, threshold=0.95, max_wait_ms=2000),
}
"""``semantic_vad`` with the turn-end model, by eagerness (docs/turn-detection.md)."""


class VadState(Enum):
    SILENT = "silent"
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    speech_end_ms: int


@dataclass(frozen=True, slots=True)
class TurnQuery:
    """Ask the turn-end model about the turn in ``[audio_start_ms, audio_end_ms)``."""

    query_id: int
    audio_start_ms: int
    audio_end_ms: int


Transition = SpeechStarted | SpeechStopped | TurnQuery


@dataclass(frozen=True, slots=True)
class VadParams:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    turn_end: TurnEndParams | None = None
    """Set for ``semantic_vad`` when a turn-end model answers queries."""

    @classmethod
    def from_config(cls, config: ServerVad | SemanticVad, *, turn_model: bool = False) -> VadParams:
        """``turn_model``: the edge can run the turn-end model (else a silence window)."""
        if isinstance(config, ServerVad):
            return cls(config.threshold, config.prefix_padding_ms, config.silence_duration_ms)
        if not turn_model:
            return cls(SEMANTIC_THRESHOLD, SEMANTIC_PREFIX_MS, SEMANTIC_SILENCE_MS[config.eagerness])
        turn_end = SEMANTIC_TURN_END[config.eagerness]
        return cls(SEMANTIC_THRESHOLD, SEMANTIC_PREFIX_MS, turn_end.max_wait_ms, turn_end)


class TurnDetector:
    """Feeds frames and verdicts through the state table; returns the transitions they cause."""

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.state = VadState.SILENT
        self._last_speech_end = 0.0
        self._last_frame_end = 0.0
        self._turn_start = 0.0
        self._queries = 0
        self._asked = False
        self._open_query: int | None = None

    def reset(self) -> None:
        self.state = VadState.SILENT
        self._asked = False
        self._open_query = None

    @property
    def last_speech_end_ms(self) -> float:
        """End of the last frame that counted as speech (the true end of speech so far)."""
        return self._last_speech_end

    @property
    def open_query(self) -> int | None:
        """The query whose verdict would still count, if any."""
        return self._open_query

    def feed(
        self, probability: float, frame_start_ms: float, frame_end_ms: float, floor_ms: float
    ) -> Transition | None:
        """Advance by one frame. ``floor_ms`` is the start of the uncommitted buffer."""
        p = self.params
        self._last_frame_end = frame_end_ms
        if self.state is VadState.SILENT:
            if probability >= p.threshold:
                self.state = VadState.SPEAKING
                self._last_speech_end = frame_end_ms
                start = max(floor_ms, frame_start_ms - p.prefix_padding_ms)
                self._turn_start = start
                self._asked = False
                self._open_query = None
                return SpeechStarted(audio_start_ms=int(start))
            return None
        if probability >= max(p.threshold - HYSTERESIS, 0.01):
            self._last_speech_end = frame_end_ms
            self._asked = False
            self._open_query = None
            return None
        quiet = frame_end_ms - self._last_speech_end
        if quiet >= p.silence_duration_ms:
            return self._stop(frame_end_ms)
        if p.turn_end is not None and not self._asked and quiet >= p.turn_end.pause_ms:
            self._asked = True
            self._queries += 1
            self._open_query = self._queries
            return TurnQuery(self._queries, int(max(floor_ms, self._turn_start)), int(frame_end_ms))
        return None

    def verdict(self, query_id: int, probability: float) -> SpeechStopped | None:
        """The turn-end model's answer to query ``query_id``: P(the turn is complete).

        Ends the turn at the last frame heard when the query still stands and the
        probability reaches the threshold; otherwise the silence window decides.
        """
        if self.state is not VadState.SPEAKING or query_id != self._open_query:
            return None
        self._open_query = None
        turn_end = self.params.turn_end
        if turn_end is None or probability < turn_end.threshold:
            return None
        return self._stop(self._last_frame_end)

    def _stop(self, end_ms: float) -> SpeechStopped:
        self.state = VadState.SILENT
        self._open_query = None
        return SpeechStopped(audio_end_ms=int(end_ms), speech_end_ms=int(self._last_speech_end))

"""Turn detection over VAD speech probabilities (SPEC §4.1 ``server_vad`` / ``semantic_vad``).

The detector is a two-state machine fed one probability per VAD frame, positioned on the
session's audio clock (milliseconds of input audio since the session started):

==========  =====================================  =========  ===========================
state       frame                                  next       emits
==========  =====================================  =========  ===========================
SILENT      p ≥ threshold                          SPEAKING   SpeechStarted(start − prefix)
SILENT      p < threshold                          SILENT     —
SPEAKING    p ≥ threshold − hysteresis             SPEAKING   — (silence timer reset)
SPEAKING    quiet for ≥ silence_duration_ms        SILENT     SpeechStopped(end)
SPEAKING    quiet for < silence_duration_ms        SPEAKING   —
==========  =====================================  =========  ===========================

``SpeechStopped.audio_end_ms`` includes the silence window, as the cloud reports it;
``speech_end_ms`` is where the voice actually stopped (used by latency metrics).
``semantic_vad`` has no text model here: its eagerness maps to a silence window
(:data:`SEMANTIC_SILENCE_MS`), which is documented as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..protocol.session import SemanticVad, ServerVad

HYSTERESIS: Final = 0.15
"""While speaking, a frame counts as speech down to ``threshold - HYSTERESIS`` (Silero's rule)."""

SEMANTIC_SILENCE_MS: Final[dict[str, int]] = {"high": 300, "auto": 700, "medium": 700, "low": 1500}
"""Silence window used for ``semantic_vad`` by eagerness."""

SEMANTIC_THRESHOLD: Final = 0.5
SEMANTIC_PREFIX_MS: Final = 300


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


Transition = SpeechStarted | SpeechStopped


@dataclass(frozen=True, slots=True)
class VadParams:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int

    @classmethod
    def from_config(cls, config: ServerVad | SemanticVad) -> VadParams:
        if isinstance(config, ServerVad):
            return cls(config.threshold, config.prefix_padding_ms, config.silence_duration_ms)
        return cls(SEMANTIC_THRESHOLD, SEMANTIC_PREFIX_MS, SEMANTIC_SILENCE_MS[config.eagerness])


class TurnDetector:
    """Feeds frames through the state table; returns the transitions they cause."""

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.state = VadState.SILENT
        self._last_speech_end = 0.0

    def reset(self) -> None:
        self.state = VadState.SILENT

    @property
    def last_speech_end_ms(self) -> float:
        """End of the last frame that counted as speech (the true end of speech so far)."""
        return self._last_speech_end

    def feed(
        self, probability: float, frame_start_ms: float, frame_end_ms: float, floor_ms: float
    ) -> Transition | None:
        """Advance by one frame. ``floor_ms`` is the start of the uncommitted buffer."""
        p = self.params
        if self.state is VadState.SILENT:
            if probability >= p.threshold:
                self.state = VadState.SPEAKING
                self._last_speech_end = frame_end_ms
                start = max(floor_ms, frame_start_ms - p.prefix_padding_ms)
                return SpeechStarted(audio_start_ms=int(start))
            return None
        if probability >= max(p.threshold - HYSTERESIS, 0.01):
            self._last_speech_end = frame_end_ms
            return None
        if frame_end_ms - self._last_speech_end >= p.silence_duration_ms:
            self.state = VadState.SILENT
            return SpeechStopped(
                audio_end_ms=int(frame_end_ms), speech_end_ms=int(self._last_speech_end)
            )
        return None

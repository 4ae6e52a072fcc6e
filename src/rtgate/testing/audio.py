"""Test audio: real synthetic speech (espeak-ng from the ``espeakng-loader`` wheel) and silence."""

from __future__ import annotations

import base64
from functools import cache

import numpy as np

from ..audio import float_to_pcm16
from ..pipeline.base import WIRE_SAMPLE_RATE, SpeechRequest


async def speech_pcm(text: str, voice: str = "alloy") -> bytes:
    """``text`` spoken by espeak-ng, as 24 kHz PCM16."""
    return await _speech(text, voice)


@cache
def _tts():  # type: ignore[no-untyped-def]
    from ..pipeline.engines.espeak import EspeakTTS

    return EspeakTTS()


async def _speech(text: str, voice: str) -> bytes:
    chunks = [c async for c in _tts().synthesize(SpeechRequest(text=text, voice=voice))]
    return b"".join(chunks)


def silence_pcm(ms: int) -> bytes:
    return bytes(int(WIRE_SAMPLE_RATE * ms / 1000) * 2)


def noise_pcm(ms: int, level: float = 0.003, seed: int = 0) -> bytes:
    """Quiet white noise (a room), which a real VAD must not take for speech."""
    rng = np.random.default_rng(seed)
    return float_to_pcm16(rng.normal(0, level, int(WIRE_SAMPLE_RATE * ms / 1000)).astype(np.float32))


def chunks(pcm: bytes, ms: int = 20) -> list[str]:
    """Base64 chunks of ``ms`` milliseconds, as ``input_audio_buffer.append`` carries them."""
    size = int(WIRE_SAMPLE_RATE * ms / 1000) * 2
    return [base64.b64encode(pcm[i : i + size]).decode() for i in range(0, len(pcm), size)]

"""Shared fixtures: one Silero model per test session and synthetic speech from espeak-ng."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import soxr

from rtgate.pipeline.vad_silero import SileroVAD

RATE = 16_000
SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "Voice activity detection must ignore hum, tones and noise."
)


@pytest.fixture(scope="session")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """About six seconds of synthetic English speech, 16 kHz float32, peak 0.5."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(
        [binary, "--stdout", "-s", "160", SENTENCE], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        raw = reader.readframes(reader.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    samples = soxr.resample(samples, rate, RATE).astype(np.float32)
    return (0.5 * samples / np.max(np.abs(samples))).astype(np.float32)


def frames_of(signal: np.ndarray) -> np.ndarray:
    """Whole 512-sample frames of ``signal``."""
    count = len(signal) // 512
    return signal[: count * 512].reshape(count, 512)

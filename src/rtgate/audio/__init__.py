"""Audio helpers: PCM16 ⇄ float, G.711 μ-law/A-law, resampling, durations.

Pure functions over bytes and numpy arrays, except :class:`Resampler`, which keeps the
filter state of one stream so that chunked resampling has no seams. G.711 comes from the
standard ``audioop`` module (``audioop-lts`` on Python ≥ 3.13); resampling from ``soxr``.
"""

from __future__ import annotations

import warnings
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import soxr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

AudioFormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

PCM_RATE: Final = 24_000
G711_RATE: Final = 8_000

FloatArray = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


def format_rate(format_type: AudioFormatType) -> int:
    """Sample rate of a wire format: 24 kHz PCM, 8 kHz G.711."""
    return PCM_RATE if format_type == "audio/pcm" else G711_RATE


def bytes_per_ms(format_type: AudioFormatType) -> float:
    """Bytes of one millisecond of mono audio in a wire format."""
    return PCM_RATE * 2 / 1000 if format_type == "audio/pcm" else G711_RATE / 1000


def duration_ms(nbytes: int, format_type: AudioFormatType = "audio/pcm") -> float:
    return nbytes / bytes_per_ms(format_type)


def pcm16_to_float(data: bytes) -> FloatArray:
    """PCM16 little-endian bytes → float32 in [-1, 1). A trailing odd byte is ignored."""
    usable = len(data) - (len(data) % 2)
    samples = np.frombuffer(data[:usable], dtype="<i2")
    return samples.astype(np.float32) / 32768.0


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> bytes:
    """float samples (clipped to [-1, 1]) → PCM16 little-endian bytes."""
    clipped = np.clip(samples, -1.0, 32767.0 / 32768.0)
    out: bytes = (clipped * 32768.0).astype("<i2").tobytes()
    return out


def ulaw_to_pcm16(data: bytes) -> bytes:
    return audioop.ulaw2lin(data, 2)


def alaw_to_pcm16(data: bytes) -> bytes:
    return audioop.alaw2lin(data, 2)


def pcm16_to_ulaw(data: bytes) -> bytes:
    return audioop.lin2ulaw(data, 2)


def pcm16_to_alaw(data: bytes) -> bytes:
    return audioop.lin2alaw(data, 2)


def decode_to_pcm16(data: bytes, format_type: AudioFormatType) -> bytes:
    """Wire bytes of ``format_type`` → PCM16 at that format's own rate."""
    if format_type == "audio/pcmu":
        return ulaw_to_pcm16(data)
    if format_type == "audio/pcma":
        return alaw_to_pcm16(data)
    return data


def encode_from_pcm16(data: bytes, format_type: AudioFormatType) -> bytes:
    """PCM16 at the format's own rate → wire bytes of ``format_type``."""
    if format_type == "audio/pcmu":
        return pcm16_to_ulaw(data)
    if format_type == "audio/pcma":
        return pcm16_to_alaw(data)
    return data


class Resampler:
    """Streaming resampler for one mono stream (keeps filter state between chunks)."""

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, "float32", quality)
        )

    def process(self, samples: FloatArray, *, last: bool = False) -> FloatArray:
        if self._stream is None:
            return samples
        out: FloatArray = self._stream.resample_chunk(samples.astype(np.float32, copy=False), last=last)
        return out

    def process_pcm16(self, data: bytes, *, last: bool = False) -> bytes:
        if self._stream is None:
            return data
        return float_to_pcm16(self.process(pcm16_to_float(data), last=last))


def resample(samples: FloatArray, in_rate: int, out_rate: int) -> FloatArray:
    """Resample a whole signal at once."""
    if in_rate == out_rate:
        return samples
    out: FloatArray = soxr.resample(samples.astype(np.float32, copy=False), in_rate, out_rate)
    return out


def resample_pcm16(data: bytes, in_rate: int, out_rate: int) -> bytes:
    if in_rate == out_rate:
        return data
    return float_to_pcm16(resample(pcm16_to_float(data), in_rate, out_rate))


__all__ = [
    "G711_RATE",
    "PCM_RATE",
    "AudioFormatType",
    "Resampler",
    "alaw_to_pcm16",
    "bytes_per_ms",
    "decode_to_pcm16",
    "duration_ms",
    "encode_from_pcm16",
    "float_to_pcm16",
    "format_rate",
    "pcm16_to_alaw",
    "pcm16_to_float",
    "pcm16_to_ulaw",
    "resample",
    "resample_pcm16",
    "ulaw_to_pcm16",
]

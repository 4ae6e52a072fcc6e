"""VADInput: 24 kHz PCM16 chunks of any size → whole 512-sample 16 kHz frames."""

from __future__ import annotations

import numpy as np

from rtgate.audio import float_to_pcm16
from rtgate.pipeline.vad_batcher import VADInput


def wire_audio(seconds: float) -> bytes:
    t = np.arange(int(seconds * 24_000)) / 24_000
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * 440 * t))


def test_chunking_does_not_change_the_frames():
    """20 ms chunks, odd-sized chunks and one big chunk give the same frames."""
    audio = wire_audio(1.0)
    whole = VADInput().feed(audio)
    for size in (960, 4801, 333):
        source = VADInput()
        parts = [source.feed(audio[i : i + size]) for i in range(0, len(audio), size)]
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_frames_are_whole_and_remainders_are_carried():
    """One second in is 16000 samples out: 31 frames now, the rest after flush."""
    source = VADInput()
    frames = source.feed(wire_audio(1.0))
    assert frames.shape[1] == 512 and frames.dtype == np.float32
    tail = source.flush()
    assert frames.shape[0] + tail.shape[0] == 32  # 16000 / 512 = 31.25, padded up
    assert source.frames_out == 32 and source.samples_in == 24_000


def test_an_odd_byte_is_kept_for_the_next_chunk():
    """A PCM16 sample split across two appends is not lost."""
    audio = wire_audio(0.1)
    source = VADInput()
    source.feed(audio[:101])
    source.feed(audio[101:])
    assert source.samples_in == len(audio) // 2


def test_short_chunks_yield_no_frame_until_one_is_complete():
    source = VADInput()
    assert source.feed(wire_audio(0.02)).shape == (0, 512)


def test_bytes_to_next_frame_is_exact():
    """One byte fewer than ``bytes_to_next_frame`` yields no frame; exactly that many yields one."""
    audio = wire_audio(1.0)
    for in_rate in (24_000, 8_000, 16_000):
        source, pos = VADInput(in_rate=in_rate), 0
        for _ in range(12):
            need = source.bytes_to_next_frame()
            probe = VADInput(in_rate=in_rate)
            probe.feed(audio[:pos])
            assert len(probe.feed(audio[pos : pos + need - 1])) == 0
            assert len(source.feed(audio[pos : pos + need])) == 1
            pos += need

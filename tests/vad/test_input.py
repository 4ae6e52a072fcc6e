"""VADInput and FrameCutter: PCM16 chunks of any size → whole 512-sample 16 kHz frames."""

from __future__ import annotations

import numpy as np

from rtgate.audio import float_to_pcm16
from rtgate.pipeline.vad_batcher import FrameCutter, VADInput, cut_frames, frame_source


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


def cutter_frames(cutter: FrameCutter, chunks: list[bytes]) -> np.ndarray:
    views = [v for v in (cutter.windows(c) for c in chunks) if v is not None]
    if not views:
        return np.zeros((0, 512), np.float32)
    return np.concatenate([cut_frames(cutter.cut, [v]) for v in views])


def test_the_frame_cutter_gives_the_polyphase_frames():
    """FrameCutter + cut_frames give VADInput's polyphase frames at 24 kHz and 8 kHz, for
    20 ms chunks, odd-sized chunks (a sample split across pushes) and one big chunk."""
    audio = wire_audio(1.3)
    for in_rate in (24_000, 8_000):
        expected = VADInput(in_rate=in_rate).feed(audio)
        for size in (2 * in_rate // 50, 4801, 333, len(audio)):
            cutter = FrameCutter(in_rate)
            got = cutter_frames(cutter, [audio[i : i + size] for i in range(0, len(audio), size)])
            assert got.shape == expected.shape and cutter.frames_out == len(expected)
            np.testing.assert_allclose(got, expected, atol=1e-6)


def test_cut_frames_computes_many_streams_in_one_product():
    """Views of several streams stacked in one call equal each stream's own frames."""
    audio = wire_audio(0.5)
    cutters = [FrameCutter(24_000) for _ in range(3)]
    views = [c.windows(audio[k * 98 :]) for k, c in enumerate(cutters)]
    assert all(v is not None for v in views)
    together = cut_frames(cutters[0].cut, views)  # type: ignore[arg-type]
    alone = np.concatenate([cut_frames(cutters[0].cut, [v]) for v in views])  # type: ignore[list-item]
    np.testing.assert_allclose(together, alone, atol=1e-6)  # BLAS blocking: rounding only


def test_the_cutters_bytes_to_next_frame_is_exact():
    audio = wire_audio(1.0)
    for in_rate in (24_000, 8_000):
        cutter, pos = FrameCutter(in_rate), 0
        for _ in range(12):
            need = cutter.bytes_to_next_frame()
            assert need == VADInput(in_rate=in_rate).bytes_to_next_frame() or pos
            assert cutter.windows(audio[pos : pos + need - 1]) is None
            view = cutter.windows(audio[pos + need - 1 : pos + need])
            assert view is not None and len(view) == 1
            pos += need


def test_feeds_use_the_cutter_where_the_geometry_allows():
    assert isinstance(frame_source(24_000), FrameCutter)
    assert isinstance(frame_source(8_000), FrameCutter)
    assert isinstance(frame_source(16_000), VADInput)  # no resampling: nothing to batch

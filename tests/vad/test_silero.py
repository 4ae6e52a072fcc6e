"""SileroVAD: the batched graph reproduces the original model; the API's contracts."""

from __future__ import annotations

import numpy as np
import pytest

from rtgate.pipeline.base import VADStream
from rtgate.pipeline.vad_silero import (
    SileroStream,
    SileroVAD,
    default_model_path,
    matmul_encoder,
)

from .conftest import frames_of


def reference(frames: np.ndarray) -> np.ndarray:
    """Per-frame calls of the original, unmodified graph for one stream."""
    original = SileroVAD(batching=False)
    stream = original.new_stream()
    return np.array([original.infer([stream], frame[None])[0] for frame in frames])


def streams_of(speech: np.ndarray, count: int) -> np.ndarray:
    """``count`` different signals [count, n, 512]: the speech rotated by a different offset."""
    frames = frames_of(speech)[:120]
    return np.stack([np.roll(frames, 9 * k, axis=0) for k in range(count)])


def test_batched_one_frame_per_stream_matches_original_per_frame_calls(vad, speech):
    """Frames of 4 streams stacked in one call give each stream's per-frame probabilities."""
    signals = streams_of(speech, 4)
    expected = np.stack([reference(s) for s in signals])
    streams = [vad.new_stream() for _ in signals]
    got = np.stack([vad.infer(streams, signals[:, t]) for t in range(signals.shape[1])], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (expected > 0.5).mean() > 0.4  # the comparison covers speech, not only silence


def test_batched_several_frames_per_stream_matches_original(vad, speech):
    """infer_batch with S = 3 frames of each of 4 streams reproduces the original model."""
    signals = streams_of(speech, 4)
    expected = np.stack([reference(s) for s in signals])
    streams = [vad.new_stream() for _ in signals]
    got = np.concatenate(
        [vad.infer_batch(streams, signals[:, t : t + 3]) for t in range(0, 120, 3)], axis=1
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_infer_frames_runs_one_stream_as_a_sequence(vad, speech):
    """infer_frames over uneven chunks equals frame-by-frame results."""
    frames = frames_of(speech)[:60]
    expected = reference(frames)
    stream = vad.new_stream()
    got = np.concatenate(
        [vad.infer_frames(stream, chunk) for chunk in np.split(frames, [1, 4, 9, 30])]
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert stream.frames == 60


def test_unbatched_mode_gives_the_same_results(vad, speech):
    """batching=False (one call per stream) agrees with the batched graph."""
    signals = streams_of(speech, 3)[:, :30]
    plain = SileroVAD(batching=False)
    a = [vad.new_stream() for _ in range(3)]
    b = [plain.new_stream() for _ in range(3)]
    np.testing.assert_allclose(
        vad.infer_batch(a, signals), plain.infer_batch(b, signals), atol=1e-5
    )


def test_shape_errors_name_the_expected_shape(vad):
    """A wrong frame shape is a ValueError that states the shape expected."""
    stream = vad.new_stream()
    with pytest.raises(ValueError, match=r"\[len\(streams\), 512\]"):
        vad.infer([stream], np.zeros((1, 480), np.float32))
    with pytest.raises(ValueError, match=r"\[n, 512\]"):
        vad.infer_frames(stream, np.zeros(512, np.float32))


def test_a_stream_twice_in_one_call_is_rejected(vad):
    """The same stream cannot be advanced twice by one call."""
    stream = vad.new_stream()
    with pytest.raises(ValueError, match="twice"):
        vad.infer([stream, stream], np.zeros((2, 512), np.float32))


def test_foreign_stream_is_a_type_error(vad):
    """Streams come from SileroVAD.new_stream()."""

    class Other(VADStream):
        pass

    with pytest.raises(TypeError, match="new_stream"):
        vad.infer([Other()], np.zeros((1, 512), np.float32))


def test_empty_batch_returns_empty(vad):
    assert vad.infer([], np.zeros((0, 512), np.float32)).shape == (0,)


def test_silence_gate_skips_digital_silence_and_bounds_the_error(speech):
    """The gate skips digital silence; it changes decisions only at a few speech edges.

    Measured: espeak's own pauses are digital silence too, so 44 of 195 frames are gated;
    5 decisions differ, all at word edges (onsets rise faster, hangover tails drop to 0).
    """
    gap = np.zeros(16_000, np.float32)
    frames = frames_of(np.concatenate([speech[:40_000], gap, speech[40_000:80_000]]))
    gated_vad = SileroVAD(silence_gate_dbfs=-70.0)
    expected = reference(frames)
    gated_stream = gated_vad.new_stream()
    assert isinstance(gated_stream, SileroStream)
    gated = np.array([gated_vad.infer([gated_stream], f[None])[0] for f in frames])
    assert gated_vad.gated_frames >= 31  # at least the 1 s gap
    assert np.all(gated[frames.std(axis=1) == 0] == 0.0)
    differ = (gated > 0.5) != (expected > 0.5)
    assert np.count_nonzero(differ) <= 0.04 * len(frames)


def test_the_conv_encoder_option_gives_the_same_results(vad, speech):
    """``fast_encoder=False`` (the original convolutions, batched) matches the default
    MatMul encoder: 8 streams × 3 frames per call over 120 frames of speech."""
    conv = SileroVAD(fast_encoder=False)
    signals = streams_of(speech, 8)
    a, b = [vad.new_stream() for _ in range(8)], [conv.new_stream() for _ in range(8)]
    for begin in range(0, signals.shape[1], 3):
        part = signals[:, begin : begin + 3]
        np.testing.assert_allclose(vad.infer_batch(a, part), conv.infer_batch(b, part), atol=1e-5)


def test_the_encoder_rewrite_refuses_an_unknown_graph():
    """A graph whose encoder is not Silero v6's is refused and left as it was."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(default_model_path())
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "strides").ints[0] = 64
    before = model.SerializeToString()
    with pytest.raises(RuntimeError, match="convolution"):
        matmul_encoder(model)
    assert model.SerializeToString() == before


def test_resetting_a_stream_leaves_the_streams_of_the_same_call_alone(vad, speech):
    """Streams of one call keep views of that call's state rows: a reset of one must zero
    its own rows only."""
    frames = frames_of(speech)[:12]
    a, b = vad.new_stream(), vad.new_stream()
    vad.infer_batch([a, b], np.stack([frames[:6], frames[:6]]))
    a.reset()
    after_reset = vad.infer_frames(b, frames[6:])
    alone = vad.new_stream()
    expected = vad.infer_frames(alone, frames)[6:]
    np.testing.assert_allclose(after_reset, expected, atol=1e-6)
    fresh = vad.infer_frames(vad.new_stream(), frames[6:])
    np.testing.assert_allclose(vad.infer_frames(a, frames[6:]), fresh, atol=1e-6)

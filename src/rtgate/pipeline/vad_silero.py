"""Silero VAD (v6) on onnxruntime, without torch, batched across streams.

The model is the ``silero_vad_v6.onnx`` file that ships inside the faster-whisper wheel;
nothing is downloaded. Its graph takes ``input [seq_len, 576]`` (512 new samples at
16 kHz preceded by the previous frame's last 64 samples), ``h`` and ``c`` ``[1, 1, 128]``
and returns one probability per row plus the new LSTM state. The first dimension is
*time*: the encoder treats rows independently, but the LSTM runs them as one sequence
with one state, so frames of different streams cannot be stacked as they are.

At load time the graph is rewritten (with the ``onnx`` package) so that the LSTM runs
``B`` streams side by side: the input holds ``B * S`` rows (``S`` consecutive frames of
each stream, stream-major), ``h``/``c`` become ``[1, B, 128]``, and the encoder output is
reshaped ``[B, S, 128]`` and transposed to ``[S, B, 128]`` before the LSTM. The decoder
already emits probabilities stream-major. With ``B = 1`` the rewritten graph is the
original one; its outputs match per-stream, per-frame calls of the original graph
exactly (tests/vad compare them on synthetic speech).

Measured on one core (benchmarks/bench_vad.py, CPU time): a per-stream, per-frame call
costs ~185 µs; a call's fixed overhead is ~130 µs on top of ~55 µs of compute per frame,
so 3 frames per call cost ~107 µs per frame and batches of 32 or more frames ~56 to 60 µs.

Per-stream state is ``(h, c, context)``; :meth:`SileroVAD.infer_batch` gathers it from
the streams, runs one call and scatters it back. One :class:`onnxruntime.InferenceSession`
(single-threaded: intra/inter-op 1) serves every stream; onnxruntime allows concurrent
``run`` calls on one session, but a stream must not be advanced by two calls at once.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import VAD, Deadlines, FloatAudio, VADStream

FRAME_SAMPLES = 512
"""New 16 kHz samples per VAD frame (32 ms)."""

CONTEXT_SAMPLES = 64
"""Samples of the previous frame that precede each frame in the model input."""

STATE_SIZE = 128
"""Width of the LSTM state ``h`` and ``c``."""

MODEL_RESOURCE = ("faster_whisper.assets", "silero_vad_v6.onnx")


def default_model_path() -> str:
    """Path of the Silero VAD v6 model inside the installed faster-whisper wheel."""
    package, name = MODEL_RESOURCE
    try:
        path = importlib.resources.files(package) / name
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "Silero VAD needs the model file that ships with faster-whisper; "
            "install it with `pip install faster-whisper`"
        ) from exc
    if not path.is_file():
        raise RuntimeError(f"{name} not found in the installed {package}; reinstall faster-whisper")
    return str(path)


def batched_model_bytes(model_path: str | os.PathLike[str]) -> bytes:
    """Rewrite the Silero v6 graph so its LSTM runs a batch of streams; return the model.

    Inputs become ``input [B*S, 576]`` (stream-major), ``h``/``c`` ``[1, B, 128]``; the
    output ``speech_probs`` is ``[B*S]``, stream-major. ``B`` is read from ``h``.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise RuntimeError(
            "batching Silero VAD across streams needs the `onnx` package "
            "(pip install onnx), or pass batching=False"
        ) from exc

    model = onnx.load(os.fspath(model_path))
    graph = model.graph
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    if len(lstms) != 1:
        raise RuntimeError(f"unexpected Silero graph: {len(lstms)} LSTM nodes, expected 1")
    lstm = lstms[0]
    feed = lstm.input[0]  # [B*S, 1, 128] after the encoder's own Transpose
    position = next(i for i, node in enumerate(graph.node) if feed in node.output) + 1
    prefix = "rtgate_batch_"
    graph.initializer.extend(
        [
            helper.make_tensor(prefix + "one", TensorProto.INT64, [1], [1]),
            helper.make_tensor(prefix + "two", TensorProto.INT64, [1], [2]),
            helper.make_tensor(prefix + "tail", TensorProto.INT64, [2], [-1, STATE_SIZE]),
        ]
    )
    nodes = [
        helper.make_node("Shape", ["h"], [prefix + "h_shape"]),
        helper.make_node(
            "Slice", [prefix + "h_shape", prefix + "one", prefix + "two"], [prefix + "b"]
        ),
        helper.make_node("Concat", [prefix + "b", prefix + "tail"], [prefix + "bs_shape"], axis=0),
        helper.make_node("Reshape", [feed, prefix + "bs_shape"], [prefix + "bs"]),
        helper.make_node("Transpose", [prefix + "bs"], [prefix + "sb"], perm=[1, 0, 2]),
    ]
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    lstm.input[0] = prefix + "sb"
    for value in [*graph.input, *graph.output]:
        if value.name in ("h", "c", "hn", "cn"):
            value.type.tensor_type.shape.dim[1].dim_param = "batch"
    del graph.value_info[:]  # stale shapes of the sequence-major graph
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


class SileroStream(VADStream):
    """State of one audio stream: LSTM ``h``, ``c`` and the last 64 samples seen."""

    __slots__ = ("c", "context", "frames", "h")

    def __init__(self) -> None:
        self.h = np.zeros(STATE_SIZE, dtype=np.float32)
        self.c = np.zeros(STATE_SIZE, dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self.frames = 0
        """Frames this stream has been advanced by (gated frames included)."""

    def reset(self) -> None:
        """Forget everything, as a new stream would."""
        self.h.fill(0.0)
        self.c.fill(0.0)
        self.context.fill(0.0)
        self.frames = 0


class SileroVAD(VAD):
    """Silero VAD v6 over 512-sample frames of 16 kHz float32 audio.

    Three ways in, all advancing stream state identically:

    * :meth:`infer` — one frame for each of several streams (the :class:`VAD` contract);
    * :meth:`infer_frames` — several consecutive frames of one stream in one call;
    * :meth:`infer_batch` — ``S`` consecutive frames for each of ``B`` streams in one call.

    ``batching=False`` loads the original graph and runs one call per stream (used as the
    baseline in benchmarks; results are identical).

    ``silence_gate_dbfs`` (off by default) skips the model for a stream whose frames in one
    call are all below that RMS level: those frames get probability 0, the context samples
    advance, the LSTM state is kept as it was. The model then sees the speech that follows
    as if the gated silence had not happened; tests/vad measure the resulting error.
    """

    name = "silero_vad"

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        batching: bool = True,
        silence_gate_dbfs: float | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        import onnxruntime as ort

        path = model_path if model_path is not None else default_model_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        source: str | bytes = batched_model_bytes(path) if batching else os.fspath(path)
        self.batching = batching
        self._session: Any = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._gate_power: float | None = (
            None if silence_gate_dbfs is None else 10.0 ** (silence_gate_dbfs / 10.0)
        )
        self.silence_gate_dbfs = silence_gate_dbfs
        self.gated_frames = 0
        """Frames answered by the silence gate without running the model."""

    def new_stream(self) -> SileroStream:
        return SileroStream()

    def infer(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape != (len(streams), FRAME_SAMPLES):
            raise ValueError(
                f"frames must have shape [len(streams), {FRAME_SAMPLES}] = "
                f"[{len(streams)}, {FRAME_SAMPLES}], got {list(frames.shape)}"
            )
        out: FloatAudio = self.infer_batch(streams, frames[:, None, :])[:, 0]
        return out

    def infer_frames(self, stream: VADStream, frames: FloatAudio) -> FloatAudio:
        """Probabilities for ``frames [S, 512]``, consecutive frames of one stream."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != FRAME_SAMPLES:
            raise ValueError(
                f"frames must have shape [n, {FRAME_SAMPLES}], got {list(frames.shape)}"
            )
        out: FloatAudio = self.infer_batch([stream], frames[None])[0]
        return out

    def infer_batch(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        """Probabilities ``[B, S]`` for ``frames [B, S, 512]``: S frames of each of B streams.

        Each stream must appear once; its state advances by ``S`` frames.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 3 or frames.shape[0] != len(streams) or frames.shape[2] != FRAME_SAMPLES:
            raise ValueError(
                f"frames must have shape [len(streams), n, {FRAME_SAMPLES}] with "
                f"len(streams) = {len(streams)}, got {list(frames.shape)}"
            )
        states = [_silero_stream(stream) for stream in streams]
        if len({id(state) for state in states}) != len(states):
            raise ValueError("a stream appears twice in one call; submit its frames as one row")
        batch, steps, _ = frames.shape
        probs = np.zeros((batch, steps), dtype=np.float32)
        if batch == 0 or steps == 0:
            return probs
        active = np.arange(batch)
        if self._gate_power is not None:
            power = np.mean(np.square(frames), axis=(1, 2))
            active = np.flatnonzero(power >= self._gate_power)
            self.gated_frames += (batch - active.size) * steps
        if self.batching:
            if active.size:
                probs[active] = self._run([states[i] for i in active], frames[active])
        else:
            for i in active:
                probs[i] = self._run([states[i]], frames[i : i + 1])[0]
        for state, rows in zip(states, frames, strict=True):
            state.context = rows[-1, -CONTEXT_SAMPLES:].copy()
            state.frames += steps
        return probs

    def _run(self, states: list[SileroStream], frames: FloatAudio) -> FloatAudio:
        """One model call for ``frames [B, S, 512]``; updates ``h`` and ``c``, not context."""
        batch, steps, _ = frames.shape
        rows = np.empty((batch, steps, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        rows[:, :, CONTEXT_SAMPLES:] = frames
        rows[:, 1:, :CONTEXT_SAMPLES] = frames[:, :-1, -CONTEXT_SAMPLES:]
        rows[:, 0, :CONTEXT_SAMPLES] = np.stack([s.context for s in states])
        h = np.stack([s.h for s in states])[None]
        c = np.stack([s.c for s in states])[None]
        probs, hn, cn = self._session.run(
            None, {"input": rows.reshape(batch * steps, -1), "h": h, "c": c}
        )
        for i, state in enumerate(states):
            state.h = hn[0, i].copy()
            state.c = cn[0, i].copy()
        out: FloatAudio = np.asarray(probs, dtype=np.float32).reshape(batch, steps)
        return out


def _silero_stream(stream: VADStream) -> SileroStream:
    if not isinstance(stream, SileroStream):
        raise TypeError(
            f"SileroVAD needs streams from SileroVAD.new_stream(), got {type(stream).__name__}"
        )
    return stream


def dbfs(samples: FloatAudio) -> float:
    """RMS level of ``samples`` in dB relative to full scale (-inf for digital silence)."""
    power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    return -math.inf if power <= 0.0 else 10.0 * math.log10(power)


__all__ = [
    "CONTEXT_SAMPLES",
    "FRAME_SAMPLES",
    "SileroStream",
    "SileroVAD",
    "batched_model_bytes",
    "dbfs",
    "default_model_path",
]

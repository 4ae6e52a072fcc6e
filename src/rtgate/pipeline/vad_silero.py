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

The encoder is also rewritten (:func:`matmul_encoder`): its five 1-D convolutions run
on only 1 to 5 time positions per frame, and onnxruntime's ``Conv`` computes them as one
small matrix product per row, so a batched call spent ~80 % of its time there. The
rewrite computes the same sums as a few large ``MatMul`` over every row of the call (the
STFT becomes windows × basis, each convolution an im2col × weights) and skips the STFT
position the original graph computes and then slices away. Results equal the original
graph's to float rounding (max difference ~1e-5 on speech; tests/vad).

Measured on one core (benchmarks/bench_vad.py, CPU time): a per-stream, per-frame call
of the original graph costs ~185 µs; a call's fixed overhead is ~130 µs on top of ~55 µs
of compute per frame, so batches of 32 or more frames cost ~56 to 60 µs per frame with
the original encoder and ~17 to 20 µs with the rewritten one.

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


def batched_model_bytes(
    model_path: str | os.PathLike[str], *, fast_encoder: bool = True
) -> bytes:
    """Rewrite the Silero v6 graph so its LSTM runs a batch of streams; return the model.

    Inputs become ``input [B*S, 576]`` (stream-major), ``h``/``c`` ``[1, B, 128]``; the
    output ``speech_probs`` is ``[B*S]``, stream-major. ``B`` is read from ``h``. With
    ``fast_encoder`` the encoder is rewritten as well (:func:`matmul_encoder`).
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
    if fast_encoder:
        matmul_encoder(model)
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


_ENCODER_OPS = [
    "Pad", "Unsqueeze", "Conv", "Slice", "Slice", "Pow", "Pow", "Add", "Sqrt",
    "Conv", "Relu", "Conv", "Relu", "Conv", "Relu", "Conv", "Relu", "Transpose",
]
"""Node types before the LSTM in silero_vad_v6.onnx, in order (what :func:`matmul_encoder`
was written against)."""

_ENCODER_CONVS = [  # (weight shape, stride, pads) of the STFT and the four conv layers
    ((258, 1, 256), 128, [0, 0]),
    ((128, 129, 3), 1, [1, 1]),
    ((64, 128, 3), 2, [1, 1]),
    ((64, 64, 3), 2, [1, 1]),
    ((128, 64, 3), 1, [1, 1]),
]


def matmul_encoder(model: Any) -> None:
    """Replace the Silero v6 encoder of ``model`` (an ``onnx.ModelProto``) by MatMul nodes.

    The original encoder, per row of ``input [R, 576]``: reflect-pad 128 samples on each
    side (832), STFT as a ``Conv`` (258 filters of 256 taps, stride 128: 5 positions, of
    which a ``Slice`` keeps the last 4), magnitude of 129 bins, then four ``Conv`` + ``Relu``
    layers over time (kernel 3, padding 1; strides 1, 2, 2, 1: 4 → 4 → 2 → 1 → 1
    positions), giving ``[R, 1, 128]`` for the LSTM. The replacement computes the same
    values: the 4 kept STFT windows are gathered from the input and its 64-sample
    reflected tail (the only padding they touch) and multiplied by the basis; each
    convolution is a gather of its (zero-padded) input windows times the flattened
    weights, restricted to the taps that can see data (a tap over padding adds 0). Every
    product runs over all ``R`` rows at once.

    Raises :class:`RuntimeError` if the graph is not the one this was written against;
    the model is then left unchanged.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)
    lstm = next((i for i, node in enumerate(nodes) if node.op_type == "LSTM"), None)
    if lstm is None or [node.op_type for node in nodes[:lstm]] != _ENCODER_OPS:
        raise RuntimeError("unexpected Silero graph: the encoder is not the v6 one")
    encoder = nodes[:lstm]
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}

    def attrs(node: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    pad = encoder[0]
    if (
        pad.input[0] != "input"
        or attrs(pad).get("mode") != b"reflect"
        or values.get(pad.input[1], np.zeros(0)).tolist() != [0, 128, 0, 128]
    ):
        raise RuntimeError("unexpected Silero graph: the STFT padding is not reflect-128")
    convs = [node for node in encoder if node.op_type == "Conv"]
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for conv, (shape, stride, pads) in zip(convs, _ENCODER_CONVS, strict=True):
        weight = values.get(conv.input[1])
        a = attrs(conv)
        if (
            weight is None
            or weight.shape != shape
            or a.get("strides") != [stride]
            or a.get("pads") != pads
            or a.get("dilations", [1]) != [1]
            or a.get("group", 1) != 1
        ):
            raise RuntimeError(f"unexpected Silero graph: convolution {conv.name!r} differs")
        weights.append(weight.astype(np.float32))
        bias = values.get(conv.input[2]) if len(conv.input) > 2 else None
        biases.append(np.zeros(shape[0], np.float32) if bias is None else bias.astype(np.float32))
    slices = [node for node in encoder if node.op_type == "Slice"]
    starts = [values[piece.input[1]].tolist() for piece in slices]
    if starts != [[0, 1], [129, 1]] or values[slices[0].input[3]].tolist() != [1, 2]:
        raise RuntimeError("unexpected Silero graph: the STFT keeps other bins or positions")

    def flat(weight: np.ndarray, taps: list[int]) -> np.ndarray:
        # [out, in, k] -> [(tap, in), out]: rows in the order the gathered windows are laid out.
        return np.ascontiguousarray(weight[:, :, taps].transpose(2, 1, 0).reshape(-1, weight.shape[0]))

    p = "rtgate_mm_"
    tensors: dict[str, np.ndarray] = {
        # x[574], x[573], …, x[511]: reflect padding past the last sample (x[575] excluded).
        "tail": np.arange(574, 510, -1, dtype=np.int64),
        # STFT positions 1..4 of the padded row start at 128·j, i.e. at 128·(j-1) of x.
        "windows": (np.arange(4)[:, None] * 128 + np.arange(256)[None]).astype(np.int64),
        "basis": np.ascontiguousarray(weights[0][:, 0, :].T),
        "pad_time": np.array([0, 1, 0, 0, 1, 0], dtype=np.int64),
        "taps0": np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]], dtype=np.int64),
        "taps1": np.array([[0, 1, 2], [2, 3, 4]], dtype=np.int64),
        "shape0": np.array([0, 4, 3 * 129], dtype=np.int64),
        "shape1": np.array([0, 2, 3 * 128], dtype=np.int64),
        "shape2": np.array([0, 2 * 64], dtype=np.int64),
        "w0": flat(weights[1], [0, 1, 2]),
        "w1": flat(weights[2], [0, 1, 2]),
        "w2": flat(weights[3], [1, 2]),  # position -1 is padding
        "w3": flat(weights[4], [1]),  # one position: only the centre tap sees data
        "b0": biases[1], "b1": biases[2], "b2": biases[3], "b3": biases[4],
        "zero": np.array([0], dtype=np.int64),
        "bins": np.array([129], dtype=np.int64),
        "bins2": np.array([258], dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
        "axis2": np.array([2], dtype=np.int64),
    }

    lstm_input = encoder[-1].output[0]

    def node(op: str, inputs: list[str], output: str, **kw: Any) -> Any:
        names = [name if name == "input" else p + name for name in inputs]
        return helper.make_node(op, names, [output if output == lstm_input else p + output], **kw)

    layer = [
        node("Gather", ["input", "tail"], "tail_x", axis=1),
        node("Concat", ["input", "tail_x"], "x", axis=1),  # [R, 640]
        node("Gather", ["x", "windows"], "frames", axis=1),  # [R, 4, 256]
        node("MatMul", ["frames", "basis"], "spec"),  # [R, 4, 258]
        node("Slice", ["spec", "zero", "bins", "axis2"], "re"),
        node("Slice", ["spec", "bins", "bins2", "axis2"], "im"),
        node("Mul", ["re", "re"], "re2"),
        node("Mul", ["im", "im"], "im2"),
        node("Add", ["re2", "im2"], "power"),
        node("Sqrt", ["power"], "mag"),  # [R, 4, 129]
        node("Pad", ["mag", "pad_time"], "mag_p"),  # [R, 6, 129]
        node("Gather", ["mag_p", "taps0"], "in0", axis=1),  # [R, 4, 3, 129]
        node("Reshape", ["in0", "shape0"], "col0"),
        node("MatMul", ["col0", "w0"], "mm0"),
        node("Add", ["mm0", "b0"], "sum0"),
        node("Relu", ["sum0"], "h0"),  # [R, 4, 128]
        node("Pad", ["h0", "pad_time"], "h0_p"),
        node("Gather", ["h0_p", "taps1"], "in1", axis=1),  # [R, 2, 3, 128]
        node("Reshape", ["in1", "shape1"], "col1"),
        node("MatMul", ["col1", "w1"], "mm1"),
        node("Add", ["mm1", "b1"], "sum1"),
        node("Relu", ["sum1"], "h1"),  # [R, 2, 64]
        node("Reshape", ["h1", "shape2"], "col2"),  # [R, 128]
        node("MatMul", ["col2", "w2"], "mm2"),
        node("Add", ["mm2", "b2"], "sum2"),
        node("Relu", ["sum2"], "h2"),  # [R, 64]
        node("MatMul", ["h2", "w3"], "mm3"),
        node("Add", ["mm3", "b3"], "sum3"),
        node("Relu", ["sum3"], "h3"),  # [R, 128]
        node("Unsqueeze", ["h3", "axis1"], lstm_input),  # [R, 1, 128], as before
    ]
    del graph.node[:]
    graph.node.extend(layer + nodes[lstm:])
    graph.initializer.extend(numpy_helper.from_array(v, p + k) for k, v in tensors.items())
    used = {name for n in graph.node for name in n.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]


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
    baseline in benchmarks; results are identical). ``fast_encoder=False`` keeps the
    original convolutional encoder in the batched graph (:func:`matmul_encoder`; results
    equal to float rounding, ~3× the model time).

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
        fast_encoder: bool = True,
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
        source: str | bytes = (
            batched_model_bytes(path, fast_encoder=fast_encoder) if batching else os.fspath(path)
        )
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
        # One copy for every stream; each keeps a view of its row (cheaper than B copies).
        contexts = frames[:, -1, -CONTEXT_SAMPLES:].copy()
        for state, context in zip(states, contexts, strict=True):
            state.context = context
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
        # Each stream keeps views of its rows of this call's outputs (no per-stream copy).
        for state, h_row, c_row in zip(states, hn[0], cn[0], strict=True):
            state.h = h_row
            state.c = c_row
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
    "matmul_encoder",
]

"""The turn-end model: is the user's turn complete? Smart Turn v3.2 on onnxruntime.

Smart Turn (pipecat-ai, BSD-2) is an audio-only classifier: it reads the last 8 s of a
turn at 16 kHz and returns the probability that the speaker has finished. Its ONNX file
ships inside the ``pipecat-ai`` wheel (``pipecat/audio/turn/smart_turn/data/``), installed
with ``--no-deps`` by ``scripts/setup.sh``; nothing is downloaded at run time. The file is
located from the package's directory without importing ``pipecat`` (whose ``__init__``
needs dependencies rtgate does not install).

Input contract (as pipecat's ``LocalSmartTurnAnalyzerV3`` feeds it): the clip is cut to
its last 8 s or padded with zeros *at the start* to exactly 128,000 samples; the padded
window is normalised to zero mean and unit variance; then Whisper's log-mel features
(400-sample periodic Hann window, hop 160, 80 Slaney mel bands, ``log10`` clamped to
8 below the window's maximum, ``(x + 4) / 4``, the last frame dropped) give
``input_features [batch, 80, 800]``; the output ``[batch, 1]`` is already a sigmoid
probability. The STFT and the mel filters are faster-whisper's (``FeatureExtractor``).

Cost: one 8 s window is ~30-60 ms of one core for the model. The features cost grows with
the longest clip of a batch, not with the 8 s window: frames that see only the padding
are all equal, so they are computed once (see :func:`log_mel_features`).

:class:`TurnEndBatcher` serves all sessions with one model call per tick: the requests
that arrive while a call runs form the next batch.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..audio import pcm16_to_float, resample
from .base import BackendError, FloatAudio, run_blocking
from .scheduler import Lane

log = logging.getLogger("rtgate.turn")

MODEL_RATE = 16_000
WINDOW_SAMPLES = 8 * MODEL_RATE
"""The model reads the last 8 s of the turn."""
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = WINDOW_SAMPLES // HOP  # 800
MODEL_PACKAGE = "pipecat"
MODEL_FILE = Path("audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
DEFAULT_MAX_BATCH = 16
"""Clips one model call takes; more wait for the next call (~1 MB of features each)."""


class TurnEndModel(Protocol):
    """Probability that each clip (16 kHz float32, the turn so far) is a complete turn."""

    def predict(self, clips: Sequence[FloatAudio]) -> FloatAudio: ...


def model_path() -> Path | None:
    """The Smart Turn v3.2 ONNX file inside the installed ``pipecat-ai`` wheel, if any.

    ``find_spec`` of a top-level package reads its location without running its
    ``__init__``.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / MODEL_FILE
        if path.is_file():
            return path
    return None


class _Whisper:
    """faster-whisper's STFT and Slaney mel filters, imported once."""

    def __init__(self) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        self.stft = FeatureExtractor.stft
        self.mel = FeatureExtractor.get_mel_filters(MODEL_RATE, N_FFT, n_mels=N_MELS).astype(np.float32)
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann


_WHISPER: _Whisper | None = None


def _whisper() -> _Whisper:
    global _WHISPER
    if _WHISPER is None:
        _WHISPER = _Whisper()
    return _WHISPER


def log_mel_features(clips: Sequence[FloatAudio]) -> np.ndarray:
    """Smart Turn's ``input_features`` ``[len(clips), 80, 800]`` for 16 kHz clips.

    Each clip is placed at the end of an 8 s window of zeros and the window normalised as
    a whole, so the padding becomes one constant value per clip. A frame that sees only
    that constant has the same spectrum wherever it lies, so the STFT runs only over the
    last ``L`` samples of the window (``L`` a multiple of the hop, reaching 200 samples
    before the longest clip) and the frames before them copy its first frame: the result
    is the full window's, for the cost of the longest clip.
    """
    w = _whisper()
    count = len(clips)
    lengths = [min(len(c), WINDOW_SAMPLES) for c in clips]
    lead = max(0, (WINDOW_SAMPLES - max(lengths, default=0) - N_FFT // 2) // HOP * HOP)
    span = WINDOW_SAMPLES - lead
    x = np.zeros((count, span), dtype=np.float32)
    for row, (clip, n) in enumerate(zip(clips, lengths, strict=True)):
        if n:
            x[row, span - n :] = clip[len(clip) - n :]
    # Mean and variance over the whole padded window (the zeros count).
    total = x.sum(axis=1, dtype=np.float64)
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    mean = total / WINDOW_SAMPLES
    var = np.maximum(squares / WINDOW_SAMPLES - mean * mean, 0.0)
    x -= mean[:, None].astype(np.float32)
    x /= np.sqrt(var + 1e-7)[:, None].astype(np.float32)
    spec = w.stft(x, N_FFT, HOP, window=w.window, return_complex=True)  # [B, 201, span/HOP + 1]
    power = np.abs(spec[..., :-1]) ** 2  # the last frame is dropped, as Whisper does
    skipped = lead // HOP
    if skipped:
        power = np.concatenate([np.repeat(power[..., :1], skipped, axis=-1), power], axis=-1)
    mel = np.matmul(w.mel, power.astype(np.float32))  # [B, 80, 800]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    floor = log_spec.reshape(count, -1).max(axis=1) - 8.0
    log_spec = np.maximum(log_spec, floor[:, None, None])
    features: np.ndarray = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features


class SmartTurn:
    """Smart Turn v3.2 on onnxruntime (CPU, no torch); ``threads`` for one call."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.path = path

    @classmethod
    def load(cls, *, threads: int = 1) -> SmartTurn | None:
        """The bundled model, or ``None`` (logged once, with why) when it is not installed."""
        path = model_path()
        if path is None:
            log.warning(
                "turn-end model not installed (pip install --no-deps 'pipecat-ai>=1.14'); "
                "semantic_vad ends turns on its silence window"
            )
            return None
        try:
            model = cls(path, threads=threads)
            model.predict([np.zeros(MODEL_RATE // 2, dtype=np.float32)])  # warm-up
        except Exception as exc:
            log.warning("turn-end model %s failed to load (%s); semantic_vad ends turns on its "
                        "silence window", path, exc)
            return None
        log.info("turn-end model: Smart Turn v3.2 (%s)", path)
        return model

    def predict(self, clips: Sequence[FloatAudio]) -> FloatAudio:
        if not clips:
            return np.zeros(0, dtype=np.float32)
        features = log_mel_features(clips)
        out = self._session.run(None, {self._input: features})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def clip_from_pcm16(pcm16: bytes, rate: int) -> FloatAudio:
    """Wire PCM16 at ``rate`` → the last 8 s at 16 kHz, float32."""
    keep = len(pcm16) - len(pcm16) % 2
    keep_bytes = 2 * (WINDOW_SAMPLES * rate // MODEL_RATE + 64)  # a little extra for the filter
    samples = pcm16_to_float(pcm16[max(0, keep - keep_bytes) : keep])
    if rate != MODEL_RATE:
        samples = resample(samples, rate, MODEL_RATE)
    return np.asarray(samples[-WINDOW_SAMPLES:], dtype=np.float32)


class TurnEndBatcher:
    """One model call at a time for every session that asks; the rest wait for the next.

    ``predict`` queues a clip and awaits its probability. A worker task (owned here,
    cancelled by :meth:`stop`) takes up to ``max_batch`` waiting clips, converts them and
    runs the model in one blocking call on the inference pool. A caller cancelled while
    waiting just loses its result.

    With a ``lane`` (the scheduler's ``cores`` lane, where Whisper and llama.cpp take their
    runs) each call first takes a run of it, due when its oldest clip was asked for: a
    paused speaker waits on the verdict, so it goes before answers that can wait and after
    work that was due sooner, instead of a third thread on two cores.
    """

    def __init__(self, model: TurnEndModel, *, max_batch: int = DEFAULT_MAX_BATCH,
                 lane: Lane | None = None) -> None:
        self.model = model
        self.max_batch = max_batch
        self.lane = lane
        self._pending: list[tuple[bytes, int, asyncio.Future[float]]] = []
        self._asked: dict[asyncio.Future[float], float] = {}
        self._worker: asyncio.Task[None] | None = None
        self._stopped = False
        self.calls = 0
        """Model calls so far (each serves one batch)."""
        self.clips = 0

    async def predict(self, pcm16: bytes, rate: int) -> float:
        """Probability that the turn in ``pcm16`` (mono PCM16 at ``rate``) is complete."""
        if self._stopped:
            raise _stopped()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.lane is not None:
            self._asked[future] = self.lane.now()
            future.add_done_callback(self._asked.pop)
        self._pending.append((pcm16, rate, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="rtgate:turn-model")
        return await future

    async def stop(self) -> None:
        self._stopped = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for _pcm, _rate, future in self._pending:
            if not future.done():
                future.set_exception(_stopped())
        self._pending.clear()

    async def _run(self) -> None:
        while self._pending:
            if self.lane is None:
                await self._call()
                continue
            # Take the batch once the run is granted: clips asked for meanwhile join it.
            now = self.lane.now()
            due = min(self._asked.get(future, now) for _pcm, _rate, future in self._pending)
            async with self.lane.hold(due, work="turn-end"):
                await self._call()

    async def _call(self) -> None:
        """One model call for up to ``max_batch`` waiting clips; settles their futures."""
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        batch = [job for job in batch if not job[2].done()]
        if not batch:
            return
        try:
            probs = await run_blocking(self._infer, [(pcm, rate) for pcm, rate, _ in batch])
        except asyncio.CancelledError:
            for _pcm, _rate, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            log.exception("turn-end model call failed")
            error = BackendError(f"The turn-end model failed: {exc}", code="turn_model_failed")
            for _pcm, _rate, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.calls += 1
        self.clips += len(batch)
        for (_pcm, _rate, future), p in zip(batch, probs, strict=True):
            if not future.done():
                future.set_result(float(p))

    def _infer(self, jobs: list[tuple[bytes, int]]) -> FloatAudio:
        return self.model.predict([clip_from_pcm16(pcm, rate) for pcm, rate in jobs])


def _stopped() -> BackendError:
    return BackendError("The turn-end model is stopped.", code="turn_model_stopped")

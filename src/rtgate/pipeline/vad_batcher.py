"""Serve many sessions' VAD with one batched model call per tick.

Two ways in:

* ``await batcher.infer(stream, frames)`` with 512-sample frames the caller made (with
  :class:`VADInput`);
* :meth:`VADBatcher.open_feed`: an :class:`AudioFeed` that takes wire PCM16 as it arrives
  (``push`` only queues the bytes) and reports probabilities through a callback. The
  resampling and framing of every feed happen once per tick for all streams, so the
  event loop's per-chunk cost is one list append, and a tick is at most one thread hop
  for all streams instead of one per chunk.

One worker task collects everything waiting when it wakes up (at most one tick per
``tick_interval_s``, so that a tick gathers the chunks of many sessions), merges the
requests of each stream, resamples and frames the feeds' audio on the loop (a feed joins
a tick only once its audio completes a frame; one matrix product resamples the frames of
all of them, see :class:`FrameCutter`), and runs the model as one blocking call on
the inference pool (:func:`rtgate.pipeline.base.run_blocking`; a tick of at most
``inline_tick_frames`` runs it on the loop instead): streams with the same number of
frames share one ``SileroVAD.infer_batch`` call; any other :class:`VAD` gets one ``infer``
call per frame position. Ticks run one after another, so a stream is never advanced by
two calls at once.

Contracts:

* bounded: at most ``max_pending`` requests wait; ``infer`` awaits room (backpressure),
  and a request longer than ``max_frames_per_request`` is split so that one long
  ``input_audio_buffer.append`` cannot starve other sessions (a feed likewise hands at
  most that much audio to one tick); a feed holds at most ``max_pending_s`` of audio not
  yet run: past that, pushed audio is replaced by silence (counted in ``dropped_bytes``)
  so that the feed's frame clock stays aligned with its audio;
* lifecycle: ``start()``/``stop()`` or ``async with``; ``stop()`` lets a model call in
  flight finish and deliver its results, then fails every request still waiting with
  :class:`BackendError` (code ``vad_stopped``); no task outlives ``stop()``;
* cancellation: a request cancelled before its tick starts is dropped and the stream is
  not advanced; once its tick has started the stream advances (the audio was received)
  and the result is discarded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from ..audio import Resampler, pcm16_to_float
from .base import VAD, WIRE_SAMPLE_RATE, BackendError, FloatAudio, VADStream, run_blocking
from .vad_silero import FRAME_SAMPLES, SileroStream, SileroVAD

log = logging.getLogger("rtgate.vad")

DEFAULT_MAX_PENDING = 4096
"""Requests that may wait for a tick before ``infer`` applies backpressure."""

DEFAULT_MAX_TICK_FRAMES = 2048
"""Frames one tick may run (~0.1 s of model time on one core)."""

DEFAULT_MAX_FRAMES_PER_REQUEST = 32
"""Frames (32 ms each) one request carries into a tick; longer ones are split."""

DEFAULT_TICK_INTERVAL_S = 0.0
"""Least time between the starts of two ticks (0: a tick starts as soon as work waits)."""

DEFAULT_MAX_FEED_PENDING_S = 10.0
"""Audio one :class:`AudioFeed` may hold before pushed audio is replaced by silence."""

FeedCallback = Callable[[int, FloatAudio], None]
"""``(index of the first frame, probabilities [n])``, called on the event loop."""


class PolyphaseResampler:
    """Streaming rational resampler (``out/in = up/down``) with a short, fixed delay.

    A Kaiser-windowed sinc low-pass (``taps_per_phase`` input samples per output sample,
    stop band ≈ 80 dB from ``stop`` × the lower Nyquist frequency, pass band to ``pass_``
    × it) applied in polyphase form: ``up`` output samples per ``down`` input samples, each
    a dot product with one of ``up`` fixed kernels, all computed as one matrix product.
    Output sample ``m`` is the signal at input time ``m · down / up`` (the filter's delay is
    compensated), as with soxr. Unlike soxr's streaming mode, which holds back up to
    ~36 ms of output at 24 → 16 kHz (it works in blocks), an output sample here waits only
    for the filter's look-ahead: ``taps_per_phase / 2`` input samples (≈ 1 ms at 24 kHz).
    """

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        taps_per_phase: int = 48,
        pass_: float = 0.9,
        stop: float = 1.08,
    ) -> None:
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        up, down = self.up, self.down
        half = taps_per_phase * up // 2  # prototype half-length, at in_rate × up
        n = np.arange(-half, half + 1, dtype=np.float64)
        nyquist = 0.5 / max(up, down)  # of the lower rate, in cycles per prototype sample
        cutoff = nyquist * (pass_ + stop) / 2
        proto = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 7.86)
        proto *= up / proto.sum()  # unity gain at DC after zero-stuffing by `up`
        # Output j·up + r = Σ_i kernel[r][i] · x[j·down + lo + i], i in [0, span).
        self._lo = -(half // up) - 1
        self._span = ((up - 1) * down + half) // up - self._lo + 1
        kernels = np.zeros((self._span, up), dtype=np.float64)
        for r in range(up):
            for i in range(self._span):
                k = r * down + half - (self._lo + i) * up  # prototype index
                if 0 <= k < len(proto):
                    kernels[i, r] = proto[k]
        while not kernels[-1].any():  # trim unused look-ahead
            kernels = kernels[:-1]
            self._span -= 1
        self._kernels = kernels.astype(np.float32)
        self._buf = np.zeros(-self._lo, dtype=np.float32)  # input from x[_base] on
        self._base = self._lo
        self._received = 0
        self._next = 0  # next output block j
        self.delay_samples = self._span + self._lo - 1
        """Input samples an output sample waits for past its own time (look-ahead)."""

    def inputs_for(self, outputs: int) -> int:
        """Input samples (counted from the start) after which :meth:`process` has returned
        at least ``outputs`` samples."""
        blocks = -(-outputs // self.up)
        return max(0, (blocks - 1) * self.down + self._lo + self._span) if blocks else 0

    def process(self, samples: FloatAudio, *, last: bool = False) -> FloatAudio:
        """Resample the next ``samples``; ``last`` pads the look-ahead with zeros."""
        samples = np.asarray(samples, dtype=np.float32)
        received = self._received + len(samples)
        self._received = received
        buf = np.concatenate([self._buf, samples]) if len(self._buf) else np.ascontiguousarray(samples)
        if last:
            buf = np.concatenate([buf, np.zeros(self._span, dtype=np.float32)])
            end = -(-received * self.up // self.down)  # outputs for the real input
            count = -(-end // self.up) - self._next
        else:
            # Block j needs x up to j·down + lo + span - 1 < received.
            count = (received - self._lo - self._span) // self.down + 1 - self._next
        out: FloatAudio
        if count <= 0:
            out = np.zeros(0, dtype=np.float32)
        else:
            start = self._next * self.down + self._lo - self._base
            # Rows j: x[start + j·down : … + span], a strided view of `buf` (no copy).
            item = buf.itemsize
            windows = np.ndarray(
                (count, self._span), np.float32, buf, start * item, (self.down * item, item)
            )
            out = (np.ascontiguousarray(windows) @ self._kernels).reshape(-1)
            self._next += count
            if last:
                out = out[: end - (self._next - count) * self.up]
        keep_from = self._next * self.down + self._lo
        self._buf = buf[keep_from - self._base :].copy()
        self._base = keep_from
        return out


class VADInput:
    """Wire PCM16 → 16 kHz float32 frames of 512 samples for one stream.

    Carries what does not fill a frame (and an odd trailing byte) to the next call, and
    keeps the resampler's filter state so chunk boundaries leave no seams. The resampler
    delays its output by a few milliseconds; :meth:`flush` emits what it holds.
    """

    def __init__(
        self,
        in_rate: int = WIRE_SAMPLE_RATE,
        *,
        out_rate: int = 16_000,
        frame_samples: int = FRAME_SAMPLES,
        quality: str = "HQ",
        resampler: str = "polyphase",
    ) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = frame_samples
        self._resampler: Resampler | PolyphaseResampler | None
        if in_rate == out_rate:
            self._resampler = None
        elif resampler == "polyphase":
            self._resampler = PolyphaseResampler(in_rate, out_rate)
        elif resampler == "soxr":
            self._resampler = Resampler(in_rate, out_rate, quality=quality)
        else:
            raise ValueError(f"resampler must be 'polyphase' or 'soxr', got {resampler!r}")
        self._odd = b""
        self._pending = np.zeros(0, dtype=np.float32)
        self.samples_in = 0
        """Input samples received (at ``in_rate``)."""
        self.frames_out = 0
        """Complete frames returned so far."""

    def feed(self, pcm16: bytes) -> FloatAudio:
        """Frames ``[n, frame_samples]`` completed by this chunk (``n`` may be 0)."""
        data = self._odd + pcm16
        usable = len(data) - (len(data) % 2)
        self._odd = data[usable:]
        self.samples_in += usable // 2
        return self._frames(self._resample(pcm16_to_float(data[:usable])))

    def bytes_to_next_frame(self) -> int:
        """PCM16 bytes :meth:`feed` still needs before it returns another frame (≥ 1).

        Audio that completes no frame yields no VAD result, so a feed need not be
        resampled before this much has arrived.
        """
        target = (self.frames_out + 1) * self.frame_samples
        if self._resampler is None:
            inputs = target
        elif isinstance(self._resampler, PolyphaseResampler):
            inputs = self._resampler.inputs_for(target)
        else:
            return 1  # soxr: its buffering is not predictable here
        return max(1, 2 * (inputs - self.samples_in) - len(self._odd))

    def feed_float(self, samples: FloatAudio) -> FloatAudio:
        """Like :meth:`feed` for float32 samples at ``in_rate``."""
        self.samples_in += len(samples)
        return self._frames(self._resample(np.asarray(samples, dtype=np.float32)))

    def flush(self, *, pad: bool = True) -> FloatAudio:
        """End of stream: drain the resampler; with ``pad``, zero-pad the last partial frame."""
        out = self._frames(self._resample(np.zeros(0, dtype=np.float32), last=True))
        if pad and self._pending.size:
            last = np.zeros((1, self.frame_samples), dtype=np.float32)
            last[0, : self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            self.frames_out += 1
            out = np.concatenate([out, last])
        return out

    def _resample(self, samples: FloatAudio, *, last: bool = False) -> FloatAudio:
        if self._resampler is None:
            return samples
        return self._resampler.process(samples, last=last)

    def _frames(self, samples: FloatAudio) -> FloatAudio:
        joined = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = len(joined) // self.frame_samples
        cut = count * self.frame_samples
        self._pending = joined[cut:].copy()
        self.frames_out += count
        frames: FloatAudio = joined[:cut].reshape(count, self.frame_samples)
        return frames


CUT_GROUP = 8
"""Polyphase blocks computed per matrix row in :func:`cut_frames` (see :class:`_Cut`)."""


@dataclass(frozen=True, slots=True, eq=False)
class _Cut:
    """Polyphase geometry of one (input rate → 16 kHz frames) conversion, shared by streams.

    A polyphase block (``up`` outputs) reads ``span`` inputs starting ``down`` after the
    previous block's. Computing one block per matrix row would copy each input sample
    into ``span / down`` (17 at 24 kHz) rows; instead a row holds ``CUT_GROUP`` consecutive
    blocks: ``window`` inputs times a banded ``[window, CUT_GROUP · up]`` matrix (the
    kernels on its diagonal, zeros elsewhere). The zeros add nothing, so the sums are the
    same; the rows are ~6× fewer bytes to gather and the product runs at full speed
    (measured ~3.5× faster per tick than one block per row).
    """

    matrix: FloatAudio
    """``[window, CUT_GROUP · up]``, scaled by 1/32768 so that PCM16 values multiply it."""
    up: int
    down: int
    window: int
    """Input samples one row reads: ``(CUT_GROUP - 1) · down + span``."""
    rows: int
    """Rows per frame: ``blocks / CUT_GROUP``."""
    stride: int
    """Input samples from one frame's first window to the next one's."""
    need: int
    """Input samples, from a frame's first window, that complete the frame."""
    history: int
    """Input samples before the stream's start that its first window reads (zeros)."""


@functools.lru_cache(maxsize=8)
def _cut_geometry(in_rate: int, out_rate: int, frame_samples: int) -> _Cut:
    resampler = PolyphaseResampler(in_rate, out_rate)
    up, down, span = resampler.up, resampler.down, resampler._span
    blocks = frame_samples // up
    if blocks % CUT_GROUP:
        raise ValueError(f"a frame of {blocks} polyphase blocks is not a multiple of {CUT_GROUP}")
    window = (CUT_GROUP - 1) * down + span
    matrix = np.zeros((window, CUT_GROUP * up), dtype=np.float32)
    for g in range(CUT_GROUP):
        matrix[g * down : g * down + span, g * up : (g + 1) * up] = resampler._kernels / 32768.0
    return _Cut(
        matrix=matrix, up=up, down=down, window=window, rows=blocks // CUT_GROUP,
        stride=blocks * down, need=(blocks - 1) * down + span, history=-resampler._lo,
    )


class FrameCutter:
    """Wire PCM16 of one stream → 16 kHz frames, computed in bulk for many streams.

    The frames are those of :class:`VADInput` with the polyphase resampler (same filter,
    same alignment: frame ``k`` is output samples ``[512k, 512(k+1))``), but a cutter only
    keeps the stream's PCM16 from the first input sample its next frame reads and hands
    out, for each frame its audio completes, a strided view of its filter windows.
    :func:`cut_frames` then resamples the frames of every stream of a tick with one
    conversion and one matrix product, instead of ~10 small numpy calls per stream; and
    as frames are computed whole, no resampled tail has to be carried.

    Only for conversions where a frame is a whole number of rows of ``CUT_GROUP`` polyphase
    blocks (24 kHz and 8 kHz → 16 kHz); :func:`frame_source` picks :class:`VADInput` otherwise.
    """

    __slots__ = ("_buf", "cut", "frame_samples", "frames_out", "in_rate", "out_rate")

    def __init__(self, in_rate: int, *, out_rate: int = 16_000, frame_samples: int = FRAME_SAMPLES) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = frame_samples
        self.cut = _cut_geometry(in_rate, out_rate, frame_samples)
        self._buf = bytes(2 * self.cut.history)
        self.frames_out = 0
        """Complete frames handed out so far."""

    def bytes_to_next_frame(self) -> int:
        """PCM16 bytes :meth:`windows` still needs before it returns another frame (≥ 1)."""
        return max(1, 2 * self.cut.need - len(self._buf))

    def windows(self, pcm16: bytes) -> np.ndarray | None:
        """Append ``pcm16``; the row windows ``[n, rows, window]`` (int16, a view; see
        :class:`_Cut`) of the ``n`` frames now complete, or ``None`` if none is."""
        buf = self._buf + pcm16 if self._buf else pcm16
        cut = self.cut
        samples = len(buf) // 2
        if samples < cut.need:
            self._buf = buf
            return None
        count = (samples - cut.need) // cut.stride + 1
        # A read-only strided view of the bytes (no copy): row j of frame i starts at
        # sample i·stride + j·CUT_GROUP·down. Built directly: as_strided costs ~6× more.
        view = np.ndarray(
            (count, cut.rows, cut.window), np.dtype("<i2"), buf, 0,
            (2 * cut.stride, 2 * CUT_GROUP * cut.down, 2),
        )
        self._buf = buf[2 * count * cut.stride :]
        self.frames_out += count
        return view


def cut_frames(cut: _Cut, views: Sequence[np.ndarray]) -> FloatAudio:
    """Frames ``[Σn, frame_samples]`` (float32) for the window views of streams sharing ``cut``."""
    windows = np.concatenate(views, dtype=np.float32) if len(views) > 1 else views[0].astype(np.float32)
    out: FloatAudio = (windows.reshape(-1, cut.window) @ cut.matrix).reshape(len(windows), -1)
    return out


def frame_source(in_rate: int) -> FrameCutter | VADInput:
    """The framer for a feed at ``in_rate``: a :class:`FrameCutter` when the geometry
    allows, else a :class:`VADInput`."""
    if in_rate != 16_000:
        up = 16_000 // math.gcd(in_rate, 16_000)
        if FRAME_SAMPLES % (up * CUT_GROUP) == 0:
            return FrameCutter(in_rate)
    return VADInput(in_rate=in_rate)


class AudioFeed:
    """One stream of wire PCM16 whose resampling, framing and VAD run inside the ticks.

    Made by :meth:`VADBatcher.open_feed`. :meth:`push` (event loop) only queues the bytes;
    once they complete a frame, the next tick turns them into frames (:class:`FrameCutter`:
    the frames of every feed of the tick in one product; :class:`VADInput` at 16 kHz)
    and runs them, then calls ``on_result(first_frame_index, probabilities)`` on the event
    loop. Frame ``i`` covers ``[i, i + 1) × 32 ms`` of the stream's audio, counted from
    its first pushed sample.
    """

    __slots__ = ("_batcher", "_pending", "_pending_bytes", "_ready_bytes", "closed",
                 "dropped_bytes", "input", "max_pending_bytes", "next_frame", "on_result",
                 "stream")

    def __init__(
        self, batcher: VADBatcher, in_rate: int, on_result: FeedCallback, max_pending_s: float
    ) -> None:
        self._batcher = batcher
        self.input = frame_source(in_rate)
        self.stream = batcher.vad.new_stream()
        self.on_result = on_result
        self.max_pending_bytes = max(2, int(max_pending_s * in_rate) * 2)
        self._pending: list[bytes | int] = []  # an int: that many bytes of silence
        self._pending_bytes = 0
        self._ready_bytes = self.input.bytes_to_next_frame()
        """Queued bytes that complete the next frame: less waits for more audio (no result
        could come of it), which saves resampling every chunk that completes no frame."""
        self.next_frame = 0
        """Index of the next frame (advanced inside a tick)."""
        self.closed = False
        self.dropped_bytes = 0
        """Bytes replaced by silence because the feed held ``max_pending_s`` already."""

    def push(self, pcm16: bytes) -> bool:
        """Queue PCM16 for the next tick; ``False`` if it had to be replaced by silence."""
        if self.closed or not pcm16:
            return True
        size = len(pcm16)
        kept = self._pending_bytes + size <= self.max_pending_bytes
        self._pending_bytes += size
        if kept:
            self._pending.append(pcm16)
        else:
            self.dropped_bytes += size
            pending = self._pending
            if pending and isinstance(pending[-1], int):
                pending[-1] += size
            else:
                pending.append(size)
        if self._pending_bytes >= self._ready_bytes:
            self._batcher._audio_ready(self)
        return kept

    def close(self) -> None:
        """Stop: drop queued audio; results of a tick in flight are discarded."""
        self.closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self._batcher._feeds.pop(self, None)

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (even) of the queued audio, on the event loop."""
        data = b"".join(bytes(p) if isinstance(p, int) else p for p in self._pending)
        if len(data) > limit:
            limit -= limit % 2
            rest, data = data[limit:], data[:limit]
            self._pending = [rest]
        else:
            self._pending = []
        self._pending_bytes -= len(data)
        return data


@dataclass(slots=True, eq=False)
class _Job:
    feed: AudioFeed
    data: bytes
    first: int = 0
    probs: FloatAudio | None = None


@dataclass(slots=True, eq=False)
class _Request:
    stream: VADStream
    frames: FloatAudio
    future: asyncio.Future[FloatAudio] = field(repr=False)


class VADBatcher:
    """Batches VAD frames of many streams into one model call per tick."""

    def __init__(
        self,
        vad: VAD,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_tick_frames: int = DEFAULT_MAX_TICK_FRAMES,
        max_frames_per_request: int = DEFAULT_MAX_FRAMES_PER_REQUEST,
        tick_interval_s: float = DEFAULT_TICK_INTERVAL_S,
        inline_tick_frames: int = 0,
    ) -> None:
        if max_pending < 1 or max_tick_frames < 1 or max_frames_per_request < 1:
            raise ValueError("max_pending, max_tick_frames and max_frames_per_request must be ≥ 1")
        if tick_interval_s < 0:
            raise ValueError("tick_interval_s must be ≥ 0")
        self.vad = vad
        self.tick_interval_s = tick_interval_s
        self.inline_tick_frames = inline_tick_frames
        self.max_tick_frames = max_tick_frames
        self.max_frames_per_request = max_frames_per_request
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(max_pending)
        self._feeds: dict[AudioFeed, None] = {}  # feeds with queued audio, in arrival order
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.ticks = 0
        """Model ticks run so far (one blocking call each)."""
        self.frames = 0
        """Frames run so far."""

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        """Start the worker task; a stopped batcher cannot be started again."""
        if self._closed:
            raise RuntimeError("this VADBatcher was stopped; create a new one")
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="rtgate-vad-batcher")

    async def stop(self) -> None:
        """Stop the worker (after the call in flight) and fail every waiting request."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        while not self._queue.empty():
            _fail(self._queue.get_nowait(), _stopped())
        for feed in list(self._feeds):
            feed.close()

    def open_feed(
        self,
        on_result: FeedCallback,
        *,
        in_rate: int = WIRE_SAMPLE_RATE,
        max_pending_s: float = DEFAULT_MAX_FEED_PENDING_S,
    ) -> AudioFeed:
        """A new stream fed with PCM16 at ``in_rate``; see :class:`AudioFeed`."""
        return AudioFeed(self, in_rate, on_result, max_pending_s)

    def _audio_ready(self, feed: AudioFeed) -> None:
        self._feeds[feed] = None
        self._wake.set()

    async def __aenter__(self) -> VADBatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def infer(self, stream: VADStream, frames: FloatAudio) -> FloatAudio:
        """Speech probability per row of ``frames [n, frame_samples]``; advances ``stream``.

        Requests for one stream run in the order they were submitted.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.vad.frame_samples:
            raise ValueError(
                f"frames must have shape [n, {self.vad.frame_samples}], got {list(frames.shape)}"
            )
        if not frames.shape[0]:
            return np.zeros(0, dtype=np.float32)
        if self._closed or self._worker is None:
            raise RuntimeError("VADBatcher is not running; use `async with VADBatcher(vad)`")
        if isinstance(self.vad, SileroVAD) and not isinstance(stream, SileroStream):
            raise TypeError(f"expected a stream from vad.new_stream(), got {type(stream).__name__}")
        step = self.max_frames_per_request
        loop = asyncio.get_running_loop()
        requests: list[_Request] = []
        try:
            for begin in range(0, frames.shape[0], step):
                request = _Request(stream, frames[begin : begin + step], loop.create_future())
                requests.append(request)
                if self._queue.full():
                    await self._queue.put(request)
                else:
                    self._queue.put_nowait(request)  # no coroutine frame on the common path
                self._wake.set()
            parts = [await request.future for request in requests]
        except BaseException:
            for request in requests:
                request.future.cancel()  # the tick skips parts that have not started
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = 0.0
        while True:
            while self._queue.empty() and not self._feeds:
                self._wake.clear()
                await self._wake.wait()
            if self.tick_interval_s:
                # Pace ticks so that one gathers the chunks of many sessions.
                delay = next_tick - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_tick = loop.time() + self.tick_interval_s
            batch: list[_Request] = []
            frames = 0
            while frames < self.max_tick_frames and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                frames += request.frames.shape[0]
            live = [r for r in batch if not r.future.done()]
            jobs = self._take_jobs()
            if live or jobs:
                await self._tick(live, jobs)

    def _take_jobs(self) -> list[_Job]:
        """The queued audio of every feed (at most one request's worth each)."""
        if not self._feeds:
            return []
        limit = 2 * int(
            self.max_frames_per_request * self.vad.frame_samples * WIRE_SAMPLE_RATE / 16_000
        )
        jobs: list[_Job] = []
        feeds, self._feeds = self._feeds, {}
        for feed in feeds:
            jobs.append(_Job(feed, feed._take(limit * feed.input.in_rate // WIRE_SAMPLE_RATE)))
            if feed._pending:
                self._feeds[feed] = None  # the rest goes to the next tick
        return jobs

    def _inline(self, batch: list[_Request], jobs: list[_Job]) -> bool:
        """Whether this tick is small enough to run on the event loop thread itself."""
        if not self.inline_tick_frames:
            return False
        frames = 0
        for request in batch:
            frames += int(request.frames.shape[0])
        for job in jobs:
            frames += len(job.data) * 8_000 // (job.feed.input.in_rate * self.vad.frame_samples)
        return frames <= self.inline_tick_frames

    async def _tick(self, batch: list[_Request], jobs: list[_Job]) -> None:
        call: asyncio.Future[dict[int, FloatAudio]]
        try:
            # Resampling and framing run here, on the loop, in both cases: on the pool
            # thread their many small numpy calls each need the GIL, which the busy loop
            # hands over only every switch interval (5 ms), so a large tick used to
            # stretch by several intervals (the p99 bursts). The thread now gets one
            # model call, which releases the GIL while it runs.
            rows = _tick_rows(batch, jobs)
        except Exception as exc:
            self._failed(batch, jobs, exc)
            return
        if self._inline(batch, jobs):
            # A small tick costs less than the thread hop and GIL hand-offs it would need.
            call = asyncio.get_running_loop().create_future()
            try:
                call.set_result(_infer_rows(self.vad, rows))
            except Exception as exc:
                call.set_exception(exc)
        else:
            call = asyncio.ensure_future(run_blocking(_infer_rows, self.vad, rows))
        try:
            probs = await asyncio.shield(call)
        except asyncio.CancelledError:
            # stop(): the thread keeps running anyway; wait so that no stream changes
            # after stop() returns, and hand over what it computed.
            await asyncio.wait([call])
            _deliver(batch, jobs, call)
            raise
        except Exception as exc:
            self._failed(batch, jobs, exc)
            return
        self.ticks += 1
        self.frames += sum(len(p) for p in probs.values())
        _deliver(batch, jobs, call)

    def _failed(self, batch: list[_Request], jobs: list[_Job], exc: Exception) -> None:
        error = self.vad._map_error(exc)
        for request in batch:
            _fail(request, error)
        if jobs:
            log.warning("VAD failed: %s", error.message)


Block = tuple[list[VADStream], FloatAudio]
"""Frames ``[B, S, 512]``: ``S`` consecutive frames of each of ``B`` distinct streams."""


def _tick_rows(batch: Sequence[_Request], jobs: Sequence[_Job]) -> list[Block]:
    """The tick's frames as blocks, one row per stream: its requests merged in submission
    order, or its feed's audio resampled and framed (the job's first frame index is set
    here). The frames a :func:`cut_frames` product computed for many streams stay one
    block when every stream got as many frames (the common case: one each), so they are
    never split per stream and stacked again."""
    rows: dict[int, list[_Request]] = {}
    for request in batch:
        rows.setdefault(id(request.stream), []).append(request)
    blocks: list[Block] = [
        (
            [group[0].stream],
            (group[0].frames if len(group) == 1 else np.concatenate([r.frames for r in group]))[None],
        )
        for group in rows.values()
    ]
    cuts: dict[_Cut, list[tuple[AudioFeed, np.ndarray]]] = {}
    for job in jobs:
        feed = job.feed
        source = feed.input
        job.first = feed.next_frame
        if isinstance(source, FrameCutter):
            view = source.windows(job.data)
            if view is not None:
                cuts.setdefault(source.cut, []).append((feed, view))
                feed.next_frame += len(view)
        else:
            frames = source.feed(job.data)
            feed.next_frame += len(frames)
            if len(frames):
                blocks.append(([feed.stream], frames[None]))
        feed._ready_bytes = source.bytes_to_next_frame()
    for cut, views in cuts.items():
        frames = cut_frames(cut, [view for _, view in views])
        count = len(views[0][1])
        if all(len(view) == count for _, view in views):
            blocks.append(([feed.stream for feed, _ in views], frames.reshape(len(views), count, -1)))
            continue
        begin = 0
        for feed, view in views:
            blocks.append(([feed.stream], frames[None, begin : begin + len(view)]))
            begin += len(view)
    return blocks


def _set_job_probs(jobs: Sequence[_Job], probs: dict[int, FloatAudio]) -> None:
    for job in jobs:
        job.probs = probs.get(id(job.feed.stream))


def _request_results(batch: Sequence[_Request], probs: dict[int, FloatAudio]) -> list[FloatAudio]:
    results: list[FloatAudio] = []
    offsets: dict[int, int] = {}
    for request in batch:
        key = id(request.stream)
        begin = offsets.get(key, 0)
        end = begin + request.frames.shape[0]
        offsets[key] = end
        results.append(probs[key][begin:end])
    return results


def _infer_rows(vad: VAD, blocks: list[Block]) -> dict[int, FloatAudio]:
    """Probabilities per stream id for ``blocks`` (every stream in one block only); blocks
    of the same length run as one model call."""
    out: dict[int, FloatAudio] = {}
    by_length: dict[int, list[Block]] = {}
    for block in blocks:
        by_length.setdefault(block[1].shape[1], []).append(block)
    for length, group in by_length.items():
        if len(group) == 1:
            streams, frames = group[0]
        else:
            streams = [stream for block_streams, _ in group for stream in block_streams]
            frames = np.concatenate([block_frames for _, block_frames in group])
        if isinstance(vad, SileroVAD):
            probs = vad.infer_batch(streams, frames)
        else:
            probs = np.stack([vad.infer(streams, frames[:, k]) for k in range(length)], axis=1)
        for stream, row in zip(streams, probs, strict=True):
            out[id(stream)] = row
    return out


def _deliver(
    batch: Sequence[_Request], jobs: Sequence[_Job], call: asyncio.Future[dict[int, FloatAudio]]
) -> None:
    if call.cancelled() or call.exception() is not None:
        for request in batch:
            _fail(request, _stopped())
        return
    probs = call.result()
    _set_job_probs(jobs, probs)
    for request, result in zip(batch, _request_results(batch, probs), strict=True):
        if not request.future.done():
            request.future.set_result(result)
    _report(jobs)


def _report(jobs: Sequence[_Job]) -> None:
    for job in jobs:
        if job.probs is None or job.feed.closed:
            continue
        try:
            job.feed.on_result(job.first, job.probs)
        except Exception:  # one session's bug must not stop every session's VAD
            log.exception("VAD result callback failed")


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)


def _stopped() -> BackendError:
    return BackendError("the VAD batcher was stopped", code="vad_stopped", backend="vad")


__all__ = ["AudioFeed", "FrameCutter", "VADBatcher", "VADInput", "cut_frames", "frame_source"]

"""Serve many sessions' VAD with one batched model call per tick.

Sessions turn wire audio into 512-sample frames with :class:`VADInput` and
``await batcher.infer(stream, frames)``. One worker task collects every request waiting
when it wakes up, merges the requests of each stream, and runs them as one blocking call
on the inference pool (:func:`rtgate.pipeline.base.run_blocking`): streams with the same
number of frames share one ``SileroVAD.infer_batch`` call; any other :class:`VAD` gets one
``infer`` call per frame position. Ticks run one after another, so a stream is never
advanced by two calls at once.

Contracts:

* bounded: at most ``max_pending`` requests wait; ``infer`` awaits room (backpressure),
  and a request longer than ``max_frames_per_request`` is split so that one long
  ``input_audio_buffer.append`` cannot starve other sessions;
* lifecycle: ``start()``/``stop()`` or ``async with``; ``stop()`` lets a model call in
  flight finish and deliver its results, then fails every request still waiting with
  :class:`BackendError` (code ``vad_stopped``); no task outlives ``stop()``;
* cancellation: a request cancelled before its tick starts is dropped and the stream is
  not advanced; once its tick has started the stream advances (the audio was received)
  and the result is discarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from ..audio import Resampler, pcm16_to_float
from .base import VAD, WIRE_SAMPLE_RATE, BackendError, FloatAudio, VADStream, run_blocking
from .vad_silero import FRAME_SAMPLES, SileroStream, SileroVAD

DEFAULT_MAX_PENDING = 4096
"""Requests that may wait for a tick before ``infer`` applies backpressure."""

DEFAULT_MAX_TICK_FRAMES = 2048
"""Frames one tick may run (~0.1 s of model time on one core)."""

DEFAULT_MAX_FRAMES_PER_REQUEST = 32
"""Frames (32 ms each) one request carries into a tick; longer ones are split."""


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
    ) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_samples = frame_samples
        self._resampler = Resampler(in_rate, out_rate, quality=quality)
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
        return self._frames(self._resampler.process(pcm16_to_float(data[:usable])))

    def feed_float(self, samples: FloatAudio) -> FloatAudio:
        """Like :meth:`feed` for float32 samples at ``in_rate``."""
        self.samples_in += len(samples)
        return self._frames(self._resampler.process(np.asarray(samples, dtype=np.float32)))

    def flush(self, *, pad: bool = True) -> FloatAudio:
        """End of stream: drain the resampler; with ``pad``, zero-pad the last partial frame."""
        out = self._frames(self._resampler.process(np.zeros(0, dtype=np.float32), last=True))
        if pad and self._pending.size:
            last = np.zeros((1, self.frame_samples), dtype=np.float32)
            last[0, : self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            self.frames_out += 1
            out = np.concatenate([out, last])
        return out

    def _frames(self, samples: FloatAudio) -> FloatAudio:
        joined = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = len(joined) // self.frame_samples
        cut = count * self.frame_samples
        self._pending = joined[cut:].copy()
        self.frames_out += count
        frames: FloatAudio = joined[:cut].reshape(count, self.frame_samples)
        return frames


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
    ) -> None:
        if max_pending < 1 or max_tick_frames < 1 or max_frames_per_request < 1:
            raise ValueError("max_pending, max_tick_frames and max_frames_per_request must be ≥ 1")
        self.vad = vad
        self.max_tick_frames = max_tick_frames
        self.max_frames_per_request = max_frames_per_request
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(max_pending)
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
            parts = [await request.future for request in requests]
        except BaseException:
            for request in requests:
                request.future.cancel()  # the tick skips parts that have not started
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            frames = batch[0].frames.shape[0]
            while frames < self.max_tick_frames and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                frames += request.frames.shape[0]
            live = [r for r in batch if not r.future.done()]
            if live:
                await self._tick(live)

    async def _tick(self, batch: list[_Request]) -> None:
        call = asyncio.ensure_future(run_blocking(_run_tick, self.vad, batch))
        try:
            results = await asyncio.shield(call)
        except asyncio.CancelledError:
            # stop(): the thread keeps running anyway; wait so that no stream changes
            # after stop() returns, and hand over what it computed.
            await asyncio.wait([call])
            _deliver(batch, call)
            raise
        except Exception as exc:
            error = self.vad._map_error(exc)
            for request in batch:
                _fail(request, error)
            return
        self.ticks += 1
        self.frames += sum(r.frames.shape[0] for r in batch)
        for request, probs in zip(batch, results, strict=True):
            if not request.future.done():
                request.future.set_result(probs)


def _run_tick(vad: VAD, batch: Sequence[_Request]) -> list[FloatAudio]:
    """Blocking: run every request of one tick; results in request order."""
    # Merge the requests of each stream, in submission order, into one row.
    rows: dict[int, list[_Request]] = {}
    for request in batch:
        rows.setdefault(id(request.stream), []).append(request)
    merged = [
        (
            group[0].stream,
            group[0].frames if len(group) == 1 else np.concatenate([r.frames for r in group]),
        )
        for group in rows.values()
    ]
    probs = _infer_rows(vad, merged)
    results: list[FloatAudio] = []
    offsets: dict[int, int] = {}
    for request in batch:
        key = id(request.stream)
        begin = offsets.get(key, 0)
        end = begin + request.frames.shape[0]
        offsets[key] = end
        results.append(probs[key][begin:end])
    return results


def _infer_rows(vad: VAD, rows: list[tuple[VADStream, FloatAudio]]) -> dict[int, FloatAudio]:
    """Probabilities per stream id for ``rows`` of (stream, frames [n, 512]), distinct streams."""
    out: dict[int, FloatAudio] = {}
    by_length: dict[int, list[tuple[VADStream, FloatAudio]]] = {}
    for stream, frames in rows:
        by_length.setdefault(frames.shape[0], []).append((stream, frames))
    for length, group in by_length.items():
        streams = [stream for stream, _ in group]
        if isinstance(vad, SileroVAD):
            probs = vad.infer_batch(streams, np.stack([frames for _, frames in group]))
        else:
            probs = np.stack(
                [vad.infer(streams, np.stack([f[k] for _, f in group])) for k in range(length)],
                axis=1,
            )
        for stream, row in zip(streams, probs, strict=True):
            out[id(stream)] = row
    return out


def _deliver(batch: Sequence[_Request], call: asyncio.Future[list[FloatAudio]]) -> None:
    if call.cancelled() or call.exception() is not None:
        for request in batch:
            _fail(request, _stopped())
        return
    for request, probs in zip(batch, call.result(), strict=True):
        if not request.future.done():
            request.future.set_result(probs)


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)


def _stopped() -> BackendError:
    return BackendError("the VAD batcher was stopped", code="vad_stopped", backend="vad")


__all__ = ["VADBatcher", "VADInput"]

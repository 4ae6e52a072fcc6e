"""VAD for sessions: one shared model and batcher per process, one ordered feed per session.

A :class:`VadFeed` turns a session's input audio into 32 ms frames, sends them through the
process-wide :class:`~rtgate.pipeline.vad_batcher.VADBatcher` in order, and reports each
result with its position on the session's audio clock (``origin_ms`` + frames × 32 ms).
Its queue is bounded; if the VAD falls that far behind, frames are dropped (and counted,
so the clock stays aligned) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from ..audio import format_rate
from ..pipeline.base import VAD, BackendError
from ..pipeline.vad_batcher import VADBatcher, VADInput

log = logging.getLogger("rtgate.vad")

ResultCallback = Callable[[float, float, np.ndarray], None]


class VadService:
    """The process-wide VAD model and batcher."""

    def __init__(self, vad: VAD, *, max_queued_chunks: int = 512) -> None:
        self.vad = vad
        self.batcher = VADBatcher(vad)
        self.max_queued_chunks = max_queued_chunks

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def feed(self, *, audio_format: str, origin_ms: float, on_result: ResultCallback) -> VadFeed:
        return VadFeed(self, audio_format, origin_ms, on_result)


class VadFeed:
    def __init__(
        self, service: VadService, audio_format: str, origin_ms: float, on_result: ResultCallback
    ) -> None:
        self.audio_format = audio_format
        self._service = service
        self._input = VADInput(in_rate=format_rate(audio_format))  # type: ignore[arg-type]
        self._frame_ms = 1000.0 * self._input.frame_samples / self._input.out_rate
        self._stream = service.vad.new_stream()
        self._origin_ms = origin_ms
        self._next_frame = 0
        self._on_result = on_result
        self._queue: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue(service.max_queued_chunks)
        self._task = asyncio.create_task(self._run(), name="vad-feed")
        self.dropped_frames = 0

    def feed(self, pcm16: bytes) -> bool:
        """Queue the frames this PCM16 chunk completes; ``False`` if they had to be dropped."""
        frames = self._input.feed(pcm16)
        if not len(frames):
            return True
        index = self._next_frame
        self._next_frame += len(frames)
        try:
            self._queue.put_nowait((index, frames))
        except asyncio.QueueFull:
            self.dropped_frames += len(frames)
            return False
        return True

    async def _run(self) -> None:
        carry: tuple[int, np.ndarray] | None = None
        while True:
            index, frames = carry if carry is not None else await self._queue.get()
            carry = None
            # Merge what queued up meanwhile (contiguous frames) so a stream that fell
            # behind catches up in one batched call instead of one frame per tick.
            while not self._queue.empty():
                following = self._queue.get_nowait()
                if following[0] != index + len(frames):
                    carry = following  # frames were dropped in between: keep them apart
                    break
                frames = np.concatenate([frames, following[1]])
            start = self._origin_ms + index * self._frame_ms
            try:
                probabilities = await self._service.batcher.infer(self._stream, frames)
            except BackendError as exc:
                log.warning("VAD failed: %s", exc.message)
                continue
            self._on_result(start, self._frame_ms, probabilities)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

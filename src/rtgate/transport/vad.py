"""VAD for sessions: one shared model and batcher per process, one ordered feed per session.

A :class:`VadFeed` hands a session's input audio to the process-wide
:class:`~rtgate.pipeline.vad_batcher.VADBatcher` as it arrives (one list append on the
event loop); the batcher's ticks resample it to 32 ms frames and run the model off the
loop, and the feed reports each result with its position on the session's audio clock
(``origin_ms`` + frames × 32 ms). The audio a feed holds is bounded; if the VAD falls that
far behind, the excess is replaced by silence (and counted, so the clock stays aligned)
rather than letting memory grow.

The service also holds the process's turn-end model (:mod:`rtgate.pipeline.turn_model`,
Smart Turn v3.2) behind a :class:`~rtgate.pipeline.turn_model.TurnEndBatcher`, loaded at
:meth:`VadService.start` when the ``pipecat-ai`` wheel is installed; sessions ask it when
``semantic_vad`` hears a pause (``SessionRunner``, effect ``PredictTurnEnd``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..audio import format_rate
from ..pipeline.base import VAD
from ..pipeline.scheduler import SCHEDULER
from ..pipeline.turn_model import SmartTurn, TurnEndBatcher, TurnEndModel
from ..pipeline.vad_batcher import VADBatcher

log = logging.getLogger("rtgate.vad")

ResultCallback = Callable[[float, float, np.ndarray], None]

DEFAULT_TICK_INTERVAL_S = 0.01
"""Least time between two VAD ticks: each gathers ~10 ms of every session's audio."""

DEFAULT_INLINE_TICK_FRAMES = 192
"""Ticks of at most this many frames (~4 ms of model time with the MatMul encoder, ~20 µs a
frame) run on the event loop; larger ones hand the model call to the pool thread, whose
GIL hand-offs stretch them. Was 64 when a frame cost ~60 µs; 192 measured better at
N = 150 (docs/benchmarks.md, Load)."""


class VadService:
    """The process-wide VAD model and batcher.

    ``tick_interval_s`` trades latency (a chunk waits up to that long for its tick) for
    larger batches and fewer thread hops; ``max_pending_s`` bounds each session's audio
    waiting for the VAD. ``turn_model``: ``"bundled"`` loads Smart Turn at :meth:`start`
    if it is installed (else ``semantic_vad`` keeps its silence windows, logged once),
    ``None`` runs without one, or a model to use (a fake in tests).
    """

    def __init__(
        self,
        vad: VAD,
        *,
        tick_interval_s: float = DEFAULT_TICK_INTERVAL_S,
        max_pending_s: float = 10.0,
        inline_tick_frames: int = DEFAULT_INLINE_TICK_FRAMES,
        turn_model: TurnEndModel | Literal["bundled"] | None = "bundled",
    ) -> None:
        self.vad = vad
        self._turn_model = turn_model
        self.turn_end: TurnEndBatcher | None = None
        """The turn-end model's batcher, once started with a model."""
        self.batcher = VADBatcher(
            vad, tick_interval_s=tick_interval_s, inline_tick_frames=inline_tick_frames
        )
        self.max_pending_s = max_pending_s

    async def start(self) -> None:
        await self.batcher.start()
        model: TurnEndModel | None
        if self._turn_model == "bundled":
            model = await asyncio.to_thread(SmartTurn.load)
        else:
            model = self._turn_model
        if model is not None and self.turn_end is None:
            # The real model computes on the cores Whisper and llama.cpp share: one lane.
            lane = SCHEDULER.cores() if self._turn_model == "bundled" else None
            self.turn_end = TurnEndBatcher(model, lane=lane)

    async def stop(self) -> None:
        await self.batcher.stop()
        if self.turn_end is not None:
            await self.turn_end.stop()

    def feed(self, *, audio_format: str, origin_ms: float, on_result: ResultCallback) -> VadFeed:
        return VadFeed(self, audio_format, origin_ms, on_result)


class VadFeed:
    """One session's VAD input; results come back through ``on_result`` on the event loop."""

    def __init__(
        self, service: VadService, audio_format: str, origin_ms: float, on_result: ResultCallback
    ) -> None:
        self.audio_format = audio_format
        self._origin_ms = origin_ms
        self._on_result = on_result
        self._feed = service.batcher.open_feed(
            self._deliver,
            in_rate=format_rate(audio_format),  # type: ignore[arg-type]
            max_pending_s=service.max_pending_s,
        )
        source = self._feed.input
        self._frame_ms = 1000.0 * source.frame_samples / source.out_rate
        self.feed = self._feed.push
        """``feed(pcm16) -> bool``: queue PCM16 for the VAD; ``False`` if it was dropped."""

    @property
    def dropped_bytes(self) -> int:
        return self._feed.dropped_bytes

    def _deliver(self, first: int, probabilities: np.ndarray) -> None:
        self._on_result(self._origin_ms + first * self._frame_ms, self._frame_ms, probabilities)

    async def aclose(self) -> None:
        self._feed.close()

"""The speech pipeline behind one profile: STT → LLM → TTS, streaming, cancellable.

:class:`Pipeline.respond` turns a :class:`~rtgate.core.effects.ResponsePlan` into a
stream of outputs for the session core. For audio responses the LLM runs ahead in its own
task, cut into sentence/clause chunks, while the TTS speaks the chunks already cut; each
chunk's text travels with its first audio, so the transcript never runs ahead of the
audio actually produced. Cancelling the consumer cancels both stages.

Spoken answers are paced (:mod:`~rtgate.pipeline.pacing`): the responder follows the
audio it hands out in a :class:`~rtgate.pipeline.pacing.Playback`, which the LLM request
carries as its pacer and whose due time orders the TTS work, so an answer is generated a
bounded margin ahead of what the client hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from ..audio import decode_to_pcm16, format_rate, pcm16_to_float, resample
from ..core.effects import ContextItem, ResponsePlan
from .base import (
    LLM,
    MODEL_SAMPLE_RATE,
    STT,
    TTS,
    WIRE_SAMPLE_RATE,
    Finish,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    Transcript,
    TranscriptionOptions,
    Usage,
)
from .context import SentenceChunker, audio_items_needing_transcripts, build_request
from .pacing import PacingLimits, Playback


@dataclass(frozen=True, slots=True)
class TextOut:
    text: str


@dataclass(frozen=True, slots=True)
class AudioOut:
    """PCM16 24 kHz audio and the transcript of exactly this audio."""

    pcm: bytes
    transcript: str


@dataclass(frozen=True, slots=True)
class ToolCallOut:
    index: int
    name: str | None
    call_id: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class UsageOut:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class DoneOut:
    reason: str = "stop"


PipelineOut = TextOut | AudioOut | ToolCallOut | UsageOut | DoneOut

StageObserver = Callable[[str, float], None]
"""Told ``(stage, seconds)`` as a response reaches each stage of :data:`STAGES`."""

STAGES = ("transcript", "first_text", "first_audio")
"""A response's stages, timed from when the pipeline starts it (the turn's commit, for a
turn the server detects): its user audio transcribed (mostly done while the user spoke,
``transport/incremental_stt.py``), the LLM's first text, the first audio out of the TTS."""

TranscriptSource = Callable[[ContextItem], Awaitable[str]]
"""The transcript of a user audio item, from the session (which transcribes each item once)."""

_END = object()

PREFILL_TIMEOUT_S = 10.0
"""Longest a prefill may run; it is only a hint."""

log = logging.getLogger("rtgate.pipeline")


def wire_audio_to_model(audio: bytes, audio_format: str) -> np.ndarray:
    """Wire audio (PCM 24 kHz or G.711 8 kHz) → float32 at the STT/VAD model rate."""
    pcm = decode_to_pcm16(audio, audio_format)  # type: ignore[arg-type]
    return resample(pcm16_to_float(pcm), format_rate(audio_format), MODEL_SAMPLE_RATE)  # type: ignore[arg-type]


class Pipeline:
    """One profile's engines; shared by every session that uses the profile."""

    def __init__(
        self,
        name: str,
        llm: LLM,
        tts: TTS | None = None,
        stt: STT | None = None,
        *,
        incremental_stt: bool = True,
        prefill: bool = True,
        pacing: PacingLimits | None = None,
        admission_limited: bool | None = None,
    ) -> None:
        self.name = name
        self.llm = llm
        self.tts = tts
        self.stt = stt
        self.incremental_stt = incremental_stt
        """Transcribe while the user speaks (``transport/incremental_stt.py``)."""
        self.prefill_llm = prefill
        """Let incremental STT hand the likely next prompt to the LLM before the commit
        (:meth:`prefill`)."""
        self.pacing = pacing or PacingLimits()
        """How far spoken answers are generated ahead of playback."""
        if admission_limited is None:
            admission_limited = any(b is not None and b.runs_locally for b in (llm, tts, stt))
        self.admission_limited = admission_limited
        """Its sessions count towards ``max_conversations`` (server/admission.py). By default:
        when a stage runs a model on this machine (:attr:`Backend.runs_locally`); not for
        network backends, the builtin echo or the test fakes."""
        self.on_stage: StageObserver | None = None
        """Where response stage times go (the server's ``/metrics``); see :data:`STAGES`."""

    @property
    def custom_voices(self) -> frozenset[str]:
        """Custom voice ids this profile's TTS maps (:attr:`TTS.custom_voices`)."""
        return self.tts.custom_voices if self.tts is not None else frozenset()

    @property
    def accepts_images(self) -> bool:
        """Whether this profile's LLM can be shown images (:attr:`LLM.accepts_images`)."""
        return self.llm.accepts_images

    async def warm_up(self) -> None:
        for backend in (self.stt, self.llm, self.tts):
            if backend is not None:
                await backend.warm_up()

    async def aclose(self) -> None:
        for backend in (self.stt, self.llm, self.tts):
            if backend is not None:
                await backend.aclose()

    async def transcribe(self, audio: bytes, audio_format: str, options: TranscriptionOptions) -> Transcript:
        if self.stt is None:
            return Transcript(text="", audio_seconds=0.0)
        samples = wire_audio_to_model(audio, audio_format)
        return await self.stt.transcribe(samples, options)

    def forget_conversation(self, conversation: str) -> None:
        """A session whose LLM requests carried ``conversation`` has ended (:meth:`LLM.forget`)."""
        self.llm.forget(conversation)

    async def prefill(self, plan: ResponsePlan, transcripts: Mapping[str, str]) -> None:
        """Prepare the LLM for ``plan`` (:meth:`LLM.prefill`); advisory.

        Bounded by :data:`PREFILL_TIMEOUT_S`; failures are logged at debug level and
        dropped (the real response reports its own).
        """
        request = build_request(plan, transcripts, voice_preamble=self.llm.voice_preamble)
        try:
            async with asyncio.timeout(PREFILL_TIMEOUT_S):
                await self.llm.prefill(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("pipeline %s: prefill failed: %r", self.name, exc)

    async def respond(
        self,
        plan: ResponsePlan,
        transcripts_from: TranscriptSource | None = None,
        *,
        first_token: Callable[[], None] | None = None,
    ) -> AsyncIterator[PipelineOut]:
        """Stream the response; user audio without a transcript is transcribed first.

        ``transcripts_from`` supplies those transcripts (a session reuses what it already
        transcribed while the user spoke); without it the pipeline's STT runs here.
        ``first_token`` is called once, when the LLM's first chunk arrives (tracing).
        """
        timer = _StageTimer(self.on_stage)
        transcripts: dict[str, str] = {}
        for ctx in audio_items_needing_transcripts(plan):
            if self.stt is None or not ctx.audio:
                continue
            if transcripts_from is not None:
                text = await transcripts_from(ctx)
            else:
                text = (await self.transcribe(ctx.audio, ctx.audio_format, TranscriptionOptions())).text
            transcripts[str(ctx.wire.get("id"))] = text
        request = build_request(plan, transcripts, voice_preamble=self.llm.voice_preamble,
                                images=self.llm.accepts_images)
        timer.reached("transcript")
        if "audio" in plan.output_modalities and self.tts is not None:
            playback = Playback(self.pacing, asked=timer.started)
            stream = timer.watch(self.llm.stream(replace(request, pacer=playback)), first_token)
            async for out in self._speak(stream, plan, playback):
                if isinstance(out, AudioOut) and out.pcm:
                    timer.reached("first_audio")
                yield out
            return
        stream = timer.watch(self.llm.stream(request), first_token)
        async for chunk in stream:
            translated = _translate(chunk)
            if translated is not None:
                yield translated

    async def _speak(
        self, stream: AsyncIterator[object], plan: ResponsePlan, playback: Playback
    ) -> AsyncIterator[PipelineOut]:
        assert self.tts is not None
        # Bounded: the LLM may run at most a few sentences ahead of speech.
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=8)

        async def produce() -> None:
            chunker = SentenceChunker()
            try:
                async for chunk in stream:
                    if isinstance(chunk, TextDelta):
                        for sentence in chunker.feed(chunk.text):
                            await queue.put(sentence)
                    else:
                        out = _translate(chunk)
                        if out is not None:
                            await queue.put(out)
                for sentence in chunker.flush():
                    await queue.put(sentence)
            except asyncio.CancelledError:
                # Only the consumer cancels the producer, and it reads nothing more: a
                # put here would wait on a full queue for ever (issue 17, session leak).
                raise
            except BaseException as exc:  # handed to the consumer, which re-raises it
                await queue.put(exc)
                return
            await queue.put(_END)

        producer = asyncio.create_task(produce())
        pending_done: DoneOut | None = None
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, str):
                    first = True
                    request = SpeechRequest(
                        text=item.strip(), voice=plan.voice, speed=plan.speed, due=playback.due()
                    )
                    async for pcm in self.tts.synthesize(request):
                        yield AudioOut(pcm=pcm, transcript=item if first else "")
                        playback.sent(len(pcm) / (2 * WIRE_SAMPLE_RATE))
                        first = False
                    if first:  # the engine produced no audio for this chunk
                        yield AudioOut(pcm=b"", transcript=item)
                elif isinstance(item, DoneOut):
                    pending_done = item
                else:
                    yield item  # type: ignore[misc]
            if pending_done is not None:
                yield pending_done
        finally:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer


class _StageTimer:
    """Times one response's :data:`STAGES` (each once) for a :data:`StageObserver`."""

    __slots__ = ("_observer", "_reached", "_start")

    def __init__(self, observer: StageObserver | None) -> None:
        self._observer = observer
        self._start = time.monotonic()
        self._reached: set[str] = set()

    @property
    def started(self) -> float:
        """When the response started (monotonic seconds)."""
        return self._start

    def reached(self, stage: str) -> None:
        if self._observer is not None and stage not in self._reached:
            self._reached.add(stage)
            self._observer(stage, time.monotonic() - self._start)

    async def watch(
        self, stream: AsyncIterator[object], first_chunk: Callable[[], None] | None = None
    ) -> AsyncIterator[object]:
        """``stream`` unchanged, noting its first :class:`TextDelta` (and calling
        ``first_chunk`` once, at its first chunk of any kind: tracing's first token)."""
        async for chunk in stream:
            if first_chunk is not None:
                first_chunk()
                first_chunk = None
            if isinstance(chunk, TextDelta) and chunk.text:
                self.reached("first_text")
            yield chunk


def _translate(chunk: object) -> PipelineOut | None:
    if isinstance(chunk, TextDelta):
        return TextOut(chunk.text)
    if isinstance(chunk, ToolCallDelta):
        return ToolCallOut(chunk.index, chunk.name, chunk.call_id, chunk.arguments)
    if isinstance(chunk, Usage):
        return UsageOut(chunk.input_tokens, chunk.output_tokens, chunk.cached_tokens)
    if isinstance(chunk, Finish):
        return DoneOut(chunk.reason)
    return None

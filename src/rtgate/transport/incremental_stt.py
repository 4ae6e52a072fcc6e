"""Transcribe input audio while the user speaks (docs/protocol.md, Event sequences: Transcription modes).

One :class:`IncrementalTranscriber` per session, owned by its ``SessionRunner``.

*Turn mode* (a VAD, or manual commits with a turn-based model). From
``input_audio_buffer.speech_started`` on, background passes transcribe the growing
utterance: one every ``interval_ms`` of new audio (a *partial* pass: its text is
advisory, ``TranscriptionOptions.partial``), and one as soon as the VAD has heard
``pause_ms`` of quiet after speech — the moment the utterance may be over, before the
silence window commits it. That one is a *final-quality* pass, given the latest partial
text as ``TranscriptionOptions.reference`` (Whisper's ``verified`` short window checks its
fast result against it). When the turn commits, a final-quality pass that covered the
audio up to the true end of speech (``TurnDetector.last_speech_end_ms``) is the
transcript: nothing is left to do. Otherwise the final-quality pass in flight is awaited
if it covers that end, else one final pass runs on the committed audio. Nothing is
published before the commit: deltas and ``completed`` follow ``conversation.item.added``.

*Live mode* (a live model with ``turn_detection: null``, :attr:`Session.live_transcription`).
Passes run every ``interval_ms`` of appended audio; words two consecutive passes agree on
(all but the last) are published at once as deltas under the id the next commit will
use (:meth:`Session.reserve_input_item_id`). The commit's final pass publishes the rest.

Scheduling (:mod:`~rtgate.pipeline.scheduler`): in turn mode the partial passes are
speculative — nobody waits for them — so they run only when the STT model is idle and
are skipped otherwise (the next one is tried after ``interval_ms`` more audio); the
final-quality passes are due now. Sessions whose speech text nobody will use
(:attr:`Session.uses_speech_text` false: only listening for turns) get no passes at all.
Live-mode passes are the product (their deltas), so they are never speculative.

Rules: at most one pass in flight per session (passes are sequential in one task, and
final passes share the same lock); passes run off the event loop (the STT engine's
``run_blocking``); every task is spawned through the runner, which cancels them at the
end of the session; each item is transcribed once and the result is shared by the
input-transcription events and the responder (which feeds it to the LLM); results of the
last ``cache_items`` items are kept, so later responses never re-transcribe old turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from ..audio import bytes_per_ms
from ..core import effects as fx
from ..core.session import Output, Session
from ..pipeline.base import BackendError, Skipped, Transcript, TranscriptionOptions
from ..pipeline.responder import Pipeline

log = logging.getLogger("rtgate.session")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
Apply = Callable[[list[Output]], None]


@dataclass(frozen=True, slots=True)
class IncrementalLimits:
    interval_ms: float = 500.0
    """New audio between two partial passes while the user speaks (a short-window Whisper
    pass costs ≈ 0.05–0.1 s of CPU)."""
    pause_ms: float = 64.0
    """Quiet after speech that starts a pass on the whole utterance (turn mode)."""
    live_poll_s: float = 0.1
    """How often live mode looks for new audio (no VAD events drive it)."""
    idle_poll_s: float = 0.5
    """How often an idle session checks whether a ``session.update`` turned live mode on."""
    max_utterance_ms: float = 15_000.0
    """Longer utterances get no background passes, only the final one."""
    cache_items: int = 256
    """Finished transcripts kept per session."""


@dataclass(slots=True)
class _Pass:
    end_ms: float
    text: str
    final: bool
    """Final quality (not a partial pass): usable as the committed item's transcript."""


@dataclass(slots=True)
class _Utterance:
    item_id: str
    start_ms: float
    done: _Pass | None = None
    """The latest pass of either kind."""
    final_done: _Pass | None = None
    """The latest final-quality pass."""
    running_end_ms: float | None = None
    running_final: bool = False
    running: asyncio.Future[_Pass | None] | None = None
    speech_end_ms: float | None = None
    published: str = ""
    skipped_until: float = 0.0
    """End of the audio of the last speculative pass the engine skipped."""


class IncrementalTranscriber:
    """See the module docstring."""

    def __init__(
        self,
        session: Session,
        pipeline: Pipeline,
        *,
        spawn: Spawn,
        apply: Apply,
        enabled: bool = True,
        limits: IncrementalLimits | None = None,
    ) -> None:
        self.session = session
        self.pipeline = pipeline
        self.enabled = enabled and pipeline.stt is not None
        self.limits = limits or IncrementalLimits()
        self._spawn = spawn
        self._apply = apply
        self._utterance: _Utterance | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._final: OrderedDict[str, asyncio.Future[Transcript]] = OrderedDict()
        self._loop: asyncio.Task[None] | None = None
        self.passes = 0
        """Background passes run (for tests and benchmarks)."""

    # ------------------------------------------------------------------ hooks

    def start(self) -> None:
        if self.enabled and self._loop is None:
            self._loop = self._spawn(self._run(), "incremental-stt")

    def utterance_started(self, effect: fx.UtteranceStarted) -> None:
        """The core's :class:`~rtgate.core.effects.UtteranceStarted`: passes begin."""
        if self.enabled:
            self._utterance = _Utterance(effect.item_id, effect.audio_start_ms)
            self._wake.set()

    def utterance_stopped(self, effect: fx.UtteranceStopped) -> None:
        """The core's :class:`~rtgate.core.effects.UtteranceStopped`: where its speech ended
        decides whether a pass already made covers it."""
        u = self._utterance
        if self.enabled and u is not None and u.item_id == effect.item_id:
            u.speech_end_ms = effect.speech_end_ms

    def wake(self) -> None:
        """More input audio went through the VAD: a pass may be due."""
        if self._utterance is not None:
            self._wake.set()

    # ------------------------------------------------------------------ final transcripts

    async def transcript(
        self, item_id: str, audio: bytes, audio_format: str, options: TranscriptionOptions
    ) -> Transcript:
        """The transcript of committed item ``item_id``: reused, awaited, or computed once."""
        future = self._final.get(item_id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._final[item_id] = future
            while len(self._final) > self.limits.cache_items:
                self._final.popitem(last=False)
            self._spawn(self._finish(future, item_id, audio, audio_format, options), f"stt:{item_id}")
        return await asyncio.shield(future)

    async def run_transcription(self, effect: fx.StartTranscription) -> None:
        """``conversation.item.input_audio_transcription.*`` for one committed item."""
        options = TranscriptionOptions(
            model=effect.options.get("model"),
            language=effect.options.get("language"),
            prompt=effect.options.get("prompt"),
            logprobs=bool(effect.options.get("logprobs")),
        )
        try:
            result = await self.transcript(effect.item_id, effect.audio, effect.audio_format, options)
            if options.logprobs and result.logprobs is None:
                # The shared transcript (partial passes, the response's request) has none:
                # one more pass, only for sessions that asked for log-probabilities.
                async with self._lock:
                    result = await self.pipeline.transcribe(effect.audio, effect.audio_format, options)
        except BackendError as exc:
            self._apply(self.session.on_transcription_failed(effect.item_id, exc.code, exc.message))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("session %s: transcription crashed", self.session.id)
            self._apply(
                self.session.on_transcription_failed(
                    effect.item_id, "server_error", f"Internal error: {type(exc).__name__}"
                )
            )
            return
        u = self._utterance
        published = u.published if u is not None and u.item_id == effect.item_id else ""
        if u is not None and u.item_id == effect.item_id:
            self._utterance = None
        rest = result.text[len(published):] if result.text.startswith(published) else ""
        if rest:
            self._apply(self.session.on_transcription_delta(effect.item_id, rest))
        seconds = result.audio_seconds or len(effect.audio) / bytes_per_ms(effect.audio_format) / 1000  # type: ignore[arg-type]
        self._apply(self.session.on_transcription_completed(effect.item_id, result.text, seconds,
                                                            result.logprobs))

    async def _finish(
        self,
        future: asyncio.Future[Transcript],
        item_id: str,
        audio: bytes,
        audio_format: str,
        options: TranscriptionOptions,
    ) -> None:
        try:
            result = await self._reuse(item_id, audio, audio_format)
            if result is None:
                u = self._utterance
                if u is not None and u.item_id == item_id and u.done is not None and not options.reference:
                    options = replace(options, reference=u.done.text)
                async with self._lock:
                    result = await self.pipeline.transcribe(audio, audio_format, options)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            self._final.pop(item_id, None)  # a later request may retry
            future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)

    async def _reuse(self, item_id: str, audio: bytes, audio_format: str) -> Transcript | None:
        u = self._utterance
        if u is None or u.item_id != item_id or u.speech_end_ms is None:
            return None
        seconds = len(audio) / bytes_per_ms(audio_format) / 1000  # type: ignore[arg-type]
        if u.final_done is not None and u.final_done.end_ms >= u.speech_end_ms:
            return Transcript(text=u.final_done.text, audio_seconds=seconds)
        if u.running is not None and u.running_final and (u.running_end_ms or 0.0) >= u.speech_end_ms:
            result = await asyncio.shield(u.running)
            if result is not None:
                return Transcript(text=result.text, audio_seconds=seconds)
        return None

    # ------------------------------------------------------------------ background passes

    async def _run(self) -> None:
        while True:
            live = self.session.live_transcription
            timeout = self.limits.live_poll_s if live else self.limits.idle_poll_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            target = self._next_pass()
            if target is not None:
                await self._pass(*target)

    def _next_pass(self) -> tuple[_Utterance, float, bool] | None:
        """The utterance, audio end and final quality of the pass due now, if any."""
        session, limits = self.session, self.limits
        buffer = session.buffer
        if session.live_transcription:
            u = self._utterance
            item_id = session.reserve_input_item_id()
            if u is None or u.item_id != item_id or u.start_ms < buffer.start_ms:
                u = self._utterance = _Utterance(item_id, buffer.start_ms)
            last = u.done.end_ms if u.done else u.start_ms
            return (u, buffer.end_ms, False) if buffer.end_ms - last >= limits.interval_ms else None
        u = self._utterance
        if u is None or not session.user_speaking:
            return None
        if not session.uses_speech_text:
            return None  # only listening for turns: nothing will read a transcript
        if u.start_ms < buffer.start_ms or buffer.end_ms - u.start_ms > limits.max_utterance_ms:
            return None  # cleared, or too long to be worth passes
        last = max(u.done.end_ms if u.done else u.start_ms, u.skipped_until)
        last_final = u.final_done.end_ms if u.final_done else u.start_ms
        speech_end = session.last_speech_end_ms
        if buffer.end_ms - speech_end >= limits.pause_ms and last_final < speech_end:
            return u, buffer.end_ms, True
        if buffer.end_ms - last >= limits.interval_ms:
            return u, buffer.end_ms, False
        return None

    async def _pass(self, u: _Utterance, end_ms: float, final: bool) -> None:
        audio = self.session.buffer.peek(u.start_ms, end_ms)
        fmt = self.session.buffer.format
        loop = asyncio.get_running_loop()
        u.running, u.running_end_ms, u.running_final = loop.create_future(), end_ms, final
        options = replace(
            self._options(),
            partial=not final,
            reference=u.done.text if u.done else None,
            speculative=not final and not self.session.live_transcription,
        )
        result: _Pass | None = None
        try:
            async with self._lock:
                transcript = await self.pipeline.transcribe(audio, fmt, options)
            result = _Pass(end_ms, transcript.text, final)
            self.passes += 1
        except asyncio.CancelledError:
            raise
        except Skipped:
            u.skipped_until = end_ms  # the next try waits for interval_ms of new audio
        except Exception as exc:  # the final pass reports failures; a partial one is advisory
            log.debug("session %s: incremental pass failed: %r", self.session.id, exc)
        finally:
            if not u.running.done():
                u.running.set_result(result)
            u.running = u.running_end_ms = None
        if result is None:
            return
        previous, u.done = u.done, result
        if final:
            u.final_done = result
        self._prefill(u.item_id, result.text)
        if self.session.live_transcription:
            self._publish_stable(u, previous.text if previous else "", result.text)

    def _prefill(self, item_id: str, text: str) -> None:
        """Turn mode: hand the LLM the prompt the commit's response will likely have.

        After every pass, partial ones included: llama.cpp reuses the longest cached
        prefix, so while the user speaks the prompt up to the words heard so far is
        evaluated, and the final-quality pass (which usually ends inside the silence
        window, before the commit) leaves only its last words to evaluate. Prompt
        evaluation then mostly leaves the time to first audio. Only when turn detection
        will create a response; the engine skips it when busy (``LLM.prefill``).
        """
        if not self.pipeline.prefill_llm or self.session.live_transcription or not text:
            return
        plan = self.session.draft_plan(item_id)
        if plan is None:
            return
        # Earlier user turns' audio is known by the transcripts the responses used (the
        # real request gets them from this cache too); without them the prompts would
        # part ways at the first earlier turn and little of the prefill would be reused.
        transcripts = {
            done_id: future.result().text
            for done_id, future in self._final.items()
            if future.done() and not future.cancelled() and future.exception() is None
        }
        transcripts[item_id] = text
        self._spawn(self.pipeline.prefill(plan, transcripts), f"llm-prefill:{item_id}")

    def _publish_stable(self, u: _Utterance, previous: str, current: str) -> None:
        """Live mode: publish the words two passes agree on, except the last one."""
        agreed: list[str] = []
        for a, b in zip(previous.split(), current.split(), strict=False):
            if a != b:
                break
            agreed.append(b)
        stable = " ".join(agreed[:-1])
        if len(stable) > len(u.published) and stable.startswith(u.published):
            delta = stable[len(u.published):]
            u.published = stable
            self._apply(self.session.on_transcription_delta(u.item_id, delta))

    def _options(self) -> TranscriptionOptions:
        transcription = self.session.config.audio.input.transcription
        if transcription is None:
            return TranscriptionOptions()
        return TranscriptionOptions(
            model=transcription.model, language=transcription.language, prompt=transcription.prompt
        )

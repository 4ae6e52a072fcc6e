"""Fake backends with fault knobs, for tests of the core and of clients (STYLE habit 6).

Each fake is deterministic and can be told to fail (``raise_at``), hang (``hang_at``) or
slow down (``delay_s`` from chunk ``slow_at``) at a given chunk. No patching needed: build
a :class:`~rtgate.pipeline.responder.Pipeline` from fakes and hand it to the server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..pipeline.base import (
    LLM,
    STT,
    VAD,
    Deadlines,
    Finish,
    FloatAudio,
    LLMChunk,
    LLMRequest,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    Transcript,
    TranscriptionOptions,
    Usage,
    VADStream,
)
from ..pipeline.builtin import ToneTTS, echo_answer


class FakeFault(RuntimeError):
    """The error a fake raises when told to."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Where a fake misbehaves: chunk indexes are 0-based; ``None`` disables a fault."""

    raise_at: int | None = None
    hang_at: int | None = None
    slow_at: int | None = None
    delay_s: float = 0.0

    async def before(self, index: int) -> None:
        if self.raise_at is not None and index >= self.raise_at:
            raise FakeFault(f"injected failure at chunk {index}")
        if self.hang_at is not None and index >= self.hang_at:
            await asyncio.Event().wait()  # hangs until cancelled
        if self.slow_at is not None and index >= self.slow_at:
            await asyncio.sleep(self.delay_s)


class FakeLLM(LLM):
    """Streams a scripted answer (or the echo answer) word by word; may call tools.

    ``tool_calls`` are emitted instead of text when the request has tools and the last
    message is not a tool result: ``[(name, arguments_json), …]``.
    """

    name = "fake-llm"

    def __init__(
        self,
        answer: str | None = None,
        *,
        tool_calls: Sequence[tuple[str, str]] = (),
        faults: Faults = Faults(),
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        self.answer = answer
        self.tool_calls = list(tool_calls)
        self.faults = faults
        self.requests: list[LLMRequest] = []
        self.prefills: list[LLMRequest] = []
        """Requests handed to :meth:`prefill` (the pipeline's hint before a commit)."""
        self.forgotten: list[str] = []
        """Conversations handed to :meth:`forget` (their session ended)."""
        self.forgot = threading.Event()
        """Set at each :meth:`forget` (a test's server runs on another thread)."""

    async def prefill(self, request: LLMRequest) -> None:
        self.prefills.append(request)

    def forget(self, conversation: str) -> None:
        self.forgotten.append(conversation)
        self.forgot.set()

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.requests.append(request)
        index = 0
        last_role = request.messages[-1]["role"] if request.messages else ""
        if self.tool_calls and request.tools and last_role != "tool" and request.tool_choice != "none":
            for n, (name, arguments) in enumerate(self.tool_calls):
                await self.faults.before(index)
                index += 1
                yield ToolCallDelta(index=n, name=name, call_id=f"call_fake{n}", arguments=arguments)
            yield Finish("tool_calls")
            return
        words = (self.answer or echo_answer(request)).split(" ")
        for n, word in enumerate(words):
            await self.faults.before(index)
            index += 1
            if request.max_output_tokens is not None and n >= request.max_output_tokens:
                yield Finish("length")
                return
            yield TextDelta(word if n == 0 else " " + word)
        yield Usage(input_tokens=10, output_tokens=len(words))
        yield Finish("stop")


class FakeTTS(ToneTTS):
    """Tone audio per word, with faults."""

    name = "fake-tts"

    def __init__(self, *, faults: Faults = Faults(), ms_per_word: int = 60, **kwargs: object) -> None:
        super().__init__(ms_per_word=ms_per_word, **kwargs)
        self.faults = faults
        self._chunk = 0

    async def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        async for pcm in super()._synthesize(request):
            await self.faults.before(self._chunk)
            self._chunk += 1
            yield pcm


class FakeSTT(STT):
    """Returns ``text`` (default: a description of the audio length); may fail or hang."""

    name = "fake-stt"

    def __init__(self, text: str | None = None, *, faults: Faults = Faults(), **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.text = text
        self.faults = faults
        self.calls = 0
        self.options: list[TranscriptionOptions] = []
        """The options of every call, in order (tests check partial/reference hints)."""

    async def _transcribe(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        await self.faults.before(self.calls)
        self.calls += 1
        self.options.append(options)
        seconds = len(audio) / 16_000
        return Transcript(self.text if self.text is not None else f"{seconds:.1f} seconds of audio",
                          audio_seconds=seconds)


class _EnergyStream(VADStream):
    pass


class FakeVAD(VAD):
    """Energy VAD for tests only: probability 1 when a frame's RMS exceeds ``rms``.

    Real sessions use Silero; an energy threshold fires on hum and tones.
    """

    name = "fake-vad"

    def __init__(self, rms: float = 0.02) -> None:
        super().__init__()
        self.rms = rms

    def new_stream(self) -> VADStream:
        return _EnergyStream()

    def infer(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        energy = np.sqrt(np.mean(np.square(frames), axis=1))
        result: FloatAudio = (energy > self.rms).astype(np.float32)
        return result

"""Backend interfaces of the speech pipeline: VAD, STT, LLM and TTS.

Each engine implements one method (``_stream``, ``_transcribe``, ``_synthesize`` or
``_infer``); the base classes own the hard parts every engine needs the same way:

* deadlines: time to the first chunk and between chunks for streams, a total deadline for
  one-shot calls; a hang past a deadline becomes :class:`BackendTimeout`;
* cancellation: cancelling the consuming task cancels the engine's generator, which must
  release what it holds in ``finally`` blocks;
* error mapping: any exception an engine raises becomes :class:`BackendError` with a
  stable ``code`` that the session core reports (``response.done`` with status
  ``failed``, or ``conversation.item.input_audio_transcription.failed``);
* metrics: counts of calls, failures and timeouts per backend.

Audio at the pipeline boundary is always 16-bit signed little-endian mono PCM; TTS returns
24 kHz (the wire rate) and STT/VAD take 16 kHz float32 arrays, the rate those models use.
CPU-bound engines run their work with :func:`run_blocking` so that one busy session never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from .answer import AnswerLimit

T = TypeVar("T")

FloatAudio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1]."""

WIRE_SAMPLE_RATE = 24_000
"""Sample rate of PCM on the Realtime wire (``audio/pcm``, rate 24000)."""

MODEL_SAMPLE_RATE = 16_000
"""Sample rate of the audio handed to VAD and STT engines."""


# --------------------------------------------------------------------------- errors


class BackendError(Exception):
    """A backend failed; ``code`` is reported to the client, ``message`` explains it.

    ``message`` must never contain secrets (keys, URLs with credentials).
    """

    def __init__(self, message: str, *, code: str = "backend_error", backend: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.backend = backend


class Skipped(BackendError):
    """Speculative work that was not run: the engine had no spare capacity."""

    def __init__(self, backend: str = "") -> None:
        super().__init__(f"{backend or 'backend'} is busy; speculative work skipped", code="skipped",
                         backend=backend)


class BackendTimeout(BackendError):
    """A backend did not produce its next result before its deadline."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message, code="backend_timeout", backend=backend)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Deadlines in seconds; ``None`` disables one. The defaults are those of the
    ``backend_first_chunk_s`` / ``backend_next_chunk_s`` / ``backend_total_s`` settings,
    which the server passes to every engine it builds (docs/configuration.md)."""

    first_chunk_s: float | None = 30.0
    next_chunk_s: float | None = 15.0
    total_s: float | None = 300.0


@dataclass(slots=True)
class BackendMetrics:
    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    chunks: int = 0


# --------------------------------------------------------------------------- threads

_CORE_SHARE = 1


def set_core_share(processes: int) -> None:
    """This process is one of ``processes`` sharing the cores (``rtgate serve --workers``):
    :func:`usable_cores` answers its share from now on. Call before engines are built."""
    global _CORE_SHARE
    _CORE_SHARE = max(1, processes)


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
"""cgroup v2's CPU quota of this container (``docker --cpus``, a Kubernetes CPU limit)."""


def cpu_quota(path: str = CGROUP_CPU_MAX) -> int | None:
    """Whole cores the container's CPU quota allows (rounded up), or ``None`` without one."""
    try:
        with open(path) as file:
            fields = file.read().split()  # "<quota> <period>", or "max <period>"
        return max(1, math.ceil(int(fields[0]) / int(fields[1])))
    except (OSError, IndexError, ValueError, ZeroDivisionError):  # no file, or "max"
        return None


def usable_cores() -> int:
    """The cores this process may run on — its CPU affinity (``taskset``, a cpuset), else
    the machine's, and no more than the container's CPU quota (:func:`cpu_quota`, which
    the affinity does not show) — divided among the worker processes that share them
    (:func:`set_core_share`), at least 1. Engines size their threads and instances,
    ``--workers auto`` its workers and admission its conversations from it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores // _CORE_SHARE)


# One shared pool for CPU-bound inference. Two cores: more threads than that only adds
# contention; engines that parallelise internally use their own threads on top.
_POOL: ThreadPoolExecutor | None = None


def inference_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rtgate-infer")
    return _POOL


async def run_blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking call on the inference pool and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(inference_pool(), functools.partial(fn, *args, **kwargs))


class Backend(ABC):  # noqa: B024 - abstract by intent; stages add the abstract method
    """Common base: a name, deadlines, metrics and error mapping."""

    name: str = "backend"
    runs_locally: bool = False
    """Its model work runs on this machine's cores (Whisper, llama.cpp, espeak-ng, Piper),
    so its sessions count towards ``max_conversations`` (server/admission.py); network
    backends bound themselves (``max_in_flight``)."""

    def __init__(self, *, deadlines: Deadlines | None = None) -> None:
        self.deadlines = deadlines or Deadlines()
        self.metrics = BackendMetrics()

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load models and run one tiny inference so the first real call is fast."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, sockets, model handles)."""

    def _map_error(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            if not exc.backend:
                exc.backend = self.name
            return exc
        return BackendError(
            f"{self.name} failed: {type(exc).__name__}: {exc}"[:500], backend=self.name
        )

    async def _guard_stream(self, source: AsyncIterator[T], pacer: Pacer | None = None) -> AsyncIterator[T]:
        """Yield from ``source`` under the stream deadlines, mapping errors.

        Time the engine spends waiting for ``pacer`` (the client still has audio to
        play) is not the backend's: it extends the deadline that is running.
        """
        self.metrics.calls += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = True
        running: asyncio.Timeout | None = None

        def extend(seconds: float) -> None:
            nonlocal started
            started += seconds
            when = running.when() if running is not None else None
            if when is not None:
                running.reschedule(when + seconds)  # type: ignore[union-attr]

        if pacer is not None:
            pacer.on_wait(extend)
        try:
            while True:
                limit = self.deadlines.first_chunk_s if first else self.deadlines.next_chunk_s
                if self.deadlines.total_s is not None:
                    remaining = self.deadlines.total_s - (loop.time() - started)
                    limit = remaining if limit is None else min(limit, remaining)
                try:
                    async with asyncio.timeout(limit) as running:
                        chunk = await anext(source)
                    running = None
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    self.metrics.timeouts += 1
                    what = "first result" if first else "next result"
                    raise BackendTimeout(
                        f"{self.name} produced no {what} within {limit:.1f} s", backend=self.name
                    ) from None
                first = False
                self.metrics.chunks += 1
                yield chunk
        except asyncio.CancelledError:
            raise
        except BackendError:
            self.metrics.failures += 1
            raise
        except Exception as exc:
            self.metrics.failures += 1
            raise self._map_error(exc) from exc
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _guard_call(self, awaitable: Any) -> Any:
        """Await a one-shot call under the total deadline, mapping errors."""
        self.metrics.calls += 1
        try:
            async with asyncio.timeout(self.deadlines.total_s):
                return await awaitable
        except TimeoutError:
            self.metrics.timeouts += 1
            raise BackendTimeout(
                f"{self.name} did not answer within {self.deadlines.total_s:.1f} s",
                backend=self.name,
            ) from None
        except (asyncio.CancelledError, Skipped):
            raise
        except BackendError:
            self.metrics.failures += 1
            raise
        except Exception as exc:
            self.metrics.failures += 1
            raise self._map_error(exc) from exc


# --------------------------------------------------------------------------- VAD


class VADStream(ABC):  # noqa: B024 - an opaque state type
    """Per-session VAD state (model recurrent state, context samples)."""


class VAD(Backend):
    """Voice activity detection over fixed frames of 16 kHz audio.

    ``infer`` takes one frame for each of several streams (possibly of many sessions) and
    returns one speech probability per frame, so that a batcher can serve many sessions
    with one model call. It is synchronous and CPU-bound; callers run it off the loop.
    """

    name = "vad"
    sample_rate: int = MODEL_SAMPLE_RATE
    frame_samples: int = 512

    @abstractmethod
    def new_stream(self) -> VADStream:
        """Fresh state for one audio stream."""

    @abstractmethod
    def infer(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        """Speech probability in [0, 1] per row of ``frames`` (shape ``[len(streams), frame_samples]``).

        Advances each stream's state by one frame.
        """


# --------------------------------------------------------------------------- STT


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    """What one :meth:`STT.transcribe` call asks for.

    ``partial`` and ``reference`` are hints engines may ignore: ``partial`` marks a pass
    over a growing prefix whose text is advisory (speed over accuracy is fine);
    ``reference`` is the transcript of an earlier prefix of the same utterance, which an
    engine may use to check a fast result of a final pass.
    """

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    partial: bool = False
    reference: str | None = None
    speculative: bool = False
    """Nobody waits for this result (a pass over a growing utterance): engines run it only
    on spare capacity and otherwise raise :class:`Skipped` at once."""
    logprobs: bool = False
    """The session's ``include`` asks for token log-probabilities: engines that have them
    fill :attr:`Transcript.logprobs`."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None = None
    audio_seconds: float = 0.0
    logprobs: tuple[tuple[str, float], ...] | None = None
    """``(token, log-probability)`` pairs covering the text, when asked for and known."""


class STT(Backend):
    """Speech-to-text on a complete (or growing) utterance of 16 kHz float32 audio.

    Incremental transcription while the user speaks calls :meth:`transcribe` on growing
    prefixes of the utterance; engines only need to be correct on any prefix.
    """

    name = "stt"

    async def transcribe(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        result: Transcript = await self._guard_call(self._transcribe(audio, options))
        return result

    @abstractmethod
    async def _transcribe(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        """Transcribe ``audio``; raise on failure (the base maps it to :class:`BackendError`)."""


# --------------------------------------------------------------------------- LLM


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function tool the model may call (``parameters`` is a JSON schema)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto``/``none``/``required``, or the name of the one function the model must call."""


class Pacer(Protocol):
    """When an answer's next words are needed (:class:`~rtgate.pipeline.pacing.Playback`)."""

    def due(self) -> float:
        """Monotonic time by which the next piece of output is needed."""
        ...

    async def wait_ready(self) -> None:
        """Return once more output is wanted (the client's audio is running low)."""
        ...

    def on_wait(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(seconds)`` whenever :meth:`wait_ready` is about to wait that long."""
        ...


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One generation: chat-completions-shaped messages plus tool settings.

    ``messages`` use the OpenAI chat-completions shape: ``{"role": "system"|"user"|
    "assistant"|"tool", "content": str, ...}``, assistant tool calls as
    ``{"role": "assistant", "content": None, "tool_calls": [{"id", "type": "function",
    "function": {"name", "arguments"}}]}`` and results as ``{"role": "tool",
    "tool_call_id", "content"}``.
    """

    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: int | None = None
    temperature: float | None = None
    conversation: str | None = None
    """Shared by the requests of one conversation (its first item's id, also in the
    prefill drafts): engines with several instances, each with its own prompt cache,
    send them to the same one."""
    pacer: Pacer | None = None
    """Set for spoken answers: engines that can generate in segments generate the next one
    only when :meth:`Pacer.wait_ready` says it is wanted, due at :meth:`Pacer.due`;
    without it the whole answer is due now."""
    answer: AnswerLimit | None = None
    """Where the answer should end at a natural boundary (:mod:`~rtgate.pipeline.answer`);
    set by profiles with ``voice_preamble`` on. Engines that stream in pieces honour it;
    others may ignore it."""
    reasoning_effort: str | None = None
    """The session's ``reasoning.effort``; network backends send it as ``reasoning_effort``,
    local engines ignore it."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call; ``name`` and ``call_id`` arrive on the first piece of ``index``."""

    index: int
    arguments: str = ""
    name: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """End of generation; ``reason`` is ``stop``, ``length`` or ``tool_calls``."""

    reason: str = "stop"


LLMChunk = TextDelta | ToolCallDelta | Usage | Finish


class LLM(Backend):
    """A streaming chat model."""

    name = "llm"
    voice_preamble = False
    """Whether the profile adds the voice preamble and answer limits to this model's
    requests (:mod:`~rtgate.pipeline.answer`); the embedded llama.cpp engine turns it on."""
    accepts_images = False
    """Whether user messages may carry images (``image_url`` content parts in the request's
    messages); a session served by a model that cannot see refuses ``input_image``."""

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        return self._guard_stream(self._stream(request), request.pacer)

    async def prefill(self, request: LLMRequest) -> None:
        """A hint that ``request`` is likely to be generated soon.

        Engines with a prompt cache may evaluate its prompt now, so that the real
        :meth:`stream` call starts sooner; the default does nothing. Callers treat it as
        advisory: they bound it in time and ignore its failures.
        """

    def forget(self, conversation: str) -> None:
        """The conversation ``conversation`` (:attr:`LLMRequest.conversation`) has ended:
        what an engine keeps for it (a prompt cache slot) may go to others."""

    @abstractmethod
    def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        """Yield chunks as the model produces them (an async generator)."""


# --------------------------------------------------------------------------- TTS


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    text: str
    voice: str = "alloy"
    speed: float = 1.0
    due: float | None = None
    """Monotonic time the audio is needed by (None: now); orders the engine's lane."""


class TTS(Backend):
    """Streaming text-to-speech; yields PCM16 mono at :data:`WIRE_SAMPLE_RATE`.

    Engines that produce another rate resample with :mod:`rtgate.audio` before yielding.
    """

    name = "tts"
    custom_voices: frozenset[str] = frozenset()
    """Ids a custom voice ``{"id": ...}`` may name with this engine; any other id is refused
    at ``session.update`` (``invalid_value``)."""

    def synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        return self._guard_stream(self._synthesize(request))

    @abstractmethod
    def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        """Yield PCM16 24 kHz audio chunks for ``request.text`` (an async generator)."""

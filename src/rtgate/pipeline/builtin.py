"""The deterministic built-in backend: an echo LLM and a tone TTS.

No models, no randomness: the same conversation always gets the same answer. It serves
``rtgate serve --pipeline builtin`` (protocol work, load tests, CI of clients) and the
core's end-to-end tests. It is not a speech pipeline; the default profile is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np

from ..audio import float_to_pcm16
from .base import (
    LLM,
    TTS,
    WIRE_SAMPLE_RATE,
    Finish,
    LLMChunk,
    LLMRequest,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)


def echo_answer(request: LLMRequest) -> str:
    """The answer the echo model gives: it repeats the last user message."""
    for message in reversed(request.messages):
        if message["role"] == "tool":
            return f"The tool returned: {message['content']}"
        if message["role"] == "user" and message.get("content"):
            return f"You said: {message['content']}"
    return "Hello! I am the rtgate built-in echo model."


class EchoLLM(LLM):
    """Streams :func:`echo_answer` word by word; calls a tool when the choice demands one."""

    name = "echo"

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        tools = {t.name: t for t in request.tools}
        forced = request.tool_choice if request.tool_choice in tools else None
        if request.tool_choice == "required" and tools:
            forced = next(iter(tools))
        last = request.messages[-1]["role"] if request.messages else ""
        if forced and last != "tool":
            arguments = json.dumps({"text": _last_user(request)})
            yield ToolCallDelta(index=0, name=forced, call_id=None, arguments=arguments[:10])
            yield ToolCallDelta(index=0, arguments=arguments[10:])
            yield Usage(input_tokens=_count(request), output_tokens=len(arguments) // 4 + 1)
            yield Finish("tool_calls")
            return
        words = echo_answer(request).split(" ")
        limit = request.max_output_tokens
        for index, word in enumerate(words):
            if limit is not None and index >= limit:
                yield Usage(input_tokens=_count(request), output_tokens=limit)
                yield Finish("length")
                return
            yield TextDelta(word if index == 0 else " " + word)
        yield Usage(input_tokens=_count(request), output_tokens=len(words))
        yield Finish("stop")


def _last_user(request: LLMRequest) -> str:
    for message in reversed(request.messages):
        if message["role"] == "user":
            return str(message.get("content") or "")
    return ""


def _count(request: LLMRequest) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in request.messages)


class ToneTTS(TTS):
    """Speaks each word as a short tone (pitch from the word); 24 kHz PCM16."""

    name = "tone"

    def __init__(self, *, ms_per_word: int = 120, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ms_per_word = ms_per_word

    async def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        for word in request.text.split():
            n = int(WIRE_SAMPLE_RATE * self.ms_per_word / 1000 / request.speed)
            freq = 200 + (sum(map(ord, word)) % 400)
            t = np.arange(n, dtype=np.float32) / WIRE_SAMPLE_RATE
            yield float_to_pcm16(0.2 * np.sin(2 * np.pi * freq * t))

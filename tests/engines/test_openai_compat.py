"""Network backends against an OpenAI-compatible server on 127.0.0.1 (no client mocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtgate.pipeline.base import (
    BackendError,
    BackendTimeout,
    Deadlines,
    Finish,
    LLMRequest,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    TranscriptionOptions,
    Usage,
)
from rtgate.pipeline.engines.openai_compat import (
    OpenAIChatLLM,
    OpenAIEndpoint,
    OpenAISpeechTTS,
    OpenAITranscriptionSTT,
)

from .upstream import API_KEY, Upstream

pytestmark = pytest.mark.asyncio

SHORT = Deadlines(first_chunk_s=0.5, next_chunk_s=0.5, total_s=2.0)
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def endpoint(upstream: Upstream, model: str = "test-model", **kw: object) -> OpenAIEndpoint:
    return OpenAIEndpoint(base_url=upstream.base_url, model=model, api_key=API_KEY, **kw)  # type: ignore[arg-type]


def hello() -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": "hi"}])


async def test_chat_streams_text_usage_and_finish(upstream: Upstream) -> None:
    """delta.content becomes TextDelta; usage and finish_reason close the stream."""
    llm = OpenAIChatLLM(endpoint(upstream))
    chunks = [c async for c in llm.stream(hello())]
    await llm.aclose()
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "Hello from upstream."
    assert Usage(input_tokens=12, output_tokens=3, cached_tokens=4) in chunks
    assert chunks[-1] == Finish("stop")
    sent = upstream.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert sent["body"]["stream"] is True


async def test_chat_streams_tool_call_deltas(upstream: Upstream) -> None:
    """delta.tool_calls become ToolCallDeltas whose joined arguments are JSON."""
    llm = OpenAIChatLLM(endpoint(upstream))
    request = LLMRequest(messages=hello().messages, tools=[WEATHER], tool_choice="get_weather")
    chunks = [c async for c in llm.stream(request)]
    await llm.aclose()
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name == "get_weather" and calls[0].call_id == "call_1"
    assert json.loads("".join(c.arguments for c in calls)) == {"city": "Paris"}
    assert chunks[-1] == Finish("tool_calls")
    body = upstream.requests[-1]["body"]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


async def test_azure_mode_sends_api_key_header_and_version(upstream: Upstream) -> None:
    """Azure mode authenticates with ``api-key`` and adds ``api-version``."""
    llm = OpenAIChatLLM(endpoint(upstream, azure=True, api_version="2025-04-01-preview"))
    assert [c async for c in llm.stream(hello())][-1] == Finish("stop")
    await llm.aclose()
    sent = upstream.requests[-1]
    assert sent["headers"]["api-key"] == API_KEY
    assert "authorization" not in sent["headers"]
    assert sent["query"] == {"api-version": "2025-04-01-preview"}


async def test_upstream_500_maps_to_backend_error_without_key(upstream: Upstream) -> None:
    """A 500 becomes BackendError naming the status and message, with the key scrubbed."""
    llm = OpenAIChatLLM(endpoint(upstream, model="fail-500"), deadlines=SHORT)
    with pytest.raises(BackendError) as info:
        async for _ in llm.stream(hello()):
            pass
    await llm.aclose()
    assert info.value.code == "upstream_error"
    assert "500" in info.value.message and "internal failure" in info.value.message
    assert API_KEY not in info.value.message


async def test_wrong_key_maps_to_backend_error(upstream: Upstream) -> None:
    """A 401 is reported with the upstream's message."""
    llm = OpenAIChatLLM(OpenAIEndpoint(base_url=upstream.base_url, model="m", api_key="sk-wrong"))
    with pytest.raises(BackendError, match="401"):
        async for _ in llm.stream(hello()):
            pass
    await llm.aclose()


async def test_hanging_chat_times_out(upstream: Upstream) -> None:
    """No first chunk within the deadline → BackendTimeout."""
    llm = OpenAIChatLLM(endpoint(upstream, model="hang"), deadlines=SHORT)
    with pytest.raises(BackendTimeout):
        async for _ in llm.stream(hello()):
            pass
    await llm.aclose()


async def test_stalled_chat_times_out_between_chunks(upstream: Upstream) -> None:
    """A stream that stops mid-way → BackendTimeout after the next-chunk deadline."""
    llm = OpenAIChatLLM(endpoint(upstream, model="slow"), deadlines=SHORT)
    got = []
    with pytest.raises(BackendTimeout, match="next result"):
        async for chunk in llm.stream(hello()):
            got.append(chunk)
    await llm.aclose()
    assert got == [TextDelta("Hel")]


async def test_unreachable_upstream_maps_to_backend_error() -> None:
    """A refused connection is a BackendError that does not print the URL."""
    ep = OpenAIEndpoint(base_url="http://user:pw@127.0.0.1:9/v1", model="m", api_key=API_KEY)
    llm = OpenAIChatLLM(ep, deadlines=SHORT)
    with pytest.raises(BackendError) as info:
        async for _ in llm.stream(hello()):
            pass
    await llm.aclose()
    assert "pw" not in info.value.message and API_KEY not in info.value.message


async def test_transcription_posts_a_wav(upstream: Upstream) -> None:
    """The STT sends 16 kHz PCM16 WAV as multipart with model, language and prompt."""
    stt = OpenAITranscriptionSTT(endpoint(upstream, model="whisper-1"))
    audio = np.zeros(16_000, dtype=np.float32)
    result = await stt.transcribe(audio, TranscriptionOptions(language="de", prompt="Namen"))
    await stt.aclose()
    assert result.text == "heard 32000 bytes"
    assert result.audio_seconds == pytest.approx(1.0)
    form = upstream.requests[-1]["form"]
    assert form["model"] == "whisper-1" and form["language"] == "de" and form["prompt"] == "Namen"


async def test_transcription_failure_and_hang(upstream: Upstream) -> None:
    """500 → BackendError; no answer within total_s → BackendTimeout."""
    audio = np.zeros(1600, dtype=np.float32)
    failing = OpenAITranscriptionSTT(endpoint(upstream, model="fail-500"), deadlines=SHORT)
    with pytest.raises(BackendError, match="500"):
        await failing.transcribe(audio, TranscriptionOptions())
    hanging = OpenAITranscriptionSTT(endpoint(upstream, model="hang"), deadlines=Deadlines(total_s=0.5))
    with pytest.raises(BackendTimeout):
        await hanging.transcribe(audio, TranscriptionOptions())
    await failing.aclose()
    await hanging.aclose()


async def test_speech_streams_whole_samples(upstream: Upstream) -> None:
    """/audio/speech PCM arrives in even-sized chunks totalling the upstream's audio."""
    tts = OpenAISpeechTTS(endpoint(upstream, model="tts-1"))
    chunks = [c async for c in tts.synthesize(SpeechRequest("hi", voice="coral", speed=1.25))]
    await tts.aclose()
    assert all(len(c) % 2 == 0 for c in chunks)
    assert sum(len(c) for c in chunks) == 24_000
    body = upstream.requests[-1]["body"]
    assert body == {
        "model": "tts-1",
        "input": "hi",
        "voice": "coral",
        "response_format": "pcm",
        "speed": 1.25,
    }


async def test_speech_failure_and_stall(upstream: Upstream) -> None:
    """500 → BackendError; a stalled audio stream → BackendTimeout."""
    failing = OpenAISpeechTTS(endpoint(upstream, model="fail-500"), deadlines=SHORT)
    with pytest.raises(BackendError, match="500"):
        async for _ in failing.synthesize(SpeechRequest("hi")):
            pass
    stalled = OpenAISpeechTTS(endpoint(upstream, model="slow"), deadlines=SHORT)
    with pytest.raises(BackendTimeout):
        async for _ in stalled.synthesize(SpeechRequest("hi")):
            pass
    await failing.aclose()
    await stalled.aclose()


async def test_reasoning_effort_is_sent_only_when_set(upstream: Upstream) -> None:
    """The session's reasoning.effort reaches the backend as reasoning_effort; unset, nothing."""
    llm = OpenAIChatLLM(endpoint(upstream))
    [c async for c in llm.stream(LLMRequest(messages=[{"role": "user", "content": "hi"}], reasoning_effort="low"))]
    assert upstream.requests[-1]["body"]["reasoning_effort"] == "low"
    [c async for c in llm.stream(hello())]
    assert "reasoning_effort" not in upstream.requests[-1]["body"]
    await llm.aclose()

"""Network backends that speak the OpenAI HTTP APIs (OpenAI, Azure OpenAI, Ollama, vLLM,
llama.cpp server, ...).

Contract:

* :class:`OpenAIEndpoint` holds the base URL (``…/v1`` for OpenAI-style servers; for
  Azure, ``https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT`` with
  ``azure=True`` and ``api_version``, or ``…/openai/v1`` without ``api_version``), the key
  and the model. OpenAI mode sends ``Authorization: Bearer KEY``; Azure mode sends the
  ``api-key`` header and the ``api-version`` query parameter.
* :class:`OpenAIChatLLM` streams ``POST /chat/completions`` (SSE) and turns
  ``delta.content`` into :class:`TextDelta`, ``delta.tool_calls`` into
  :class:`ToolCallDelta`, ``usage`` into :class:`Usage` and ``finish_reason`` into
  :class:`Finish`.
* :class:`OpenAITranscriptionSTT` posts a 16 kHz PCM16 WAV to ``/audio/transcriptions``.
* :class:`OpenAISpeechTTS` streams ``/audio/speech`` with ``response_format: "pcm"``
  (24 kHz PCM16 mono, the wire rate) and yields whole samples as they arrive.
* Requests in flight to one backend are bounded by ``max_in_flight`` (default 8): each
  backend has a scheduler lane (:mod:`~rtgate.pipeline.scheduler`), so requests beyond it
  wait in due order (a turn's first answer before the next words of an answer being
  played), a slow request holds one run and nobody else's, and speculative transcription
  passes run only when a run is free (else :class:`~rtgate.pipeline.base.Skipped`).
* An upstream error status becomes :class:`BackendError` with code ``upstream_error``
  and a message naming the status and the upstream's own message; connection failures
  and transport timeouts become :class:`BackendError` / :class:`BackendTimeout`. No
  message ever contains the key or the URL (which may carry credentials).
"""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rtgate.audio import float_to_pcm16
from rtgate.pipeline.base import (
    LLM,
    MODEL_SAMPLE_RATE,
    STT,
    TTS,
    BackendError,
    BackendTimeout,
    Deadlines,
    Finish,
    FloatAudio,
    LLMChunk,
    LLMRequest,
    Skipped,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    Transcript,
    TranscriptionOptions,
    Usage,
)
from rtgate.pipeline.scheduler import SCHEDULER


@dataclass(frozen=True)
class OpenAIEndpoint:
    """Where and how to reach an OpenAI-compatible API; ``api_key`` is never printed."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    azure: bool = False
    api_version: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_in_flight: int = 8
    """Requests to this backend at once; more wait in due order."""
    extra_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.api_key:
            if self.azure:
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def params(self) -> dict[str, str]:
        return {"api-version": self.api_version} if self.api_version else {}


class _HTTPBackend:
    """Owns one ``httpx.AsyncClient`` and maps transport failures to backend errors."""

    name: str
    endpoint: OpenAIEndpoint

    def _init_http(self, endpoint: OpenAIEndpoint, transport: httpx.AsyncBaseTransport | None) -> None:
        self.endpoint = endpoint
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # Named by host and model only: a base URL may carry credentials.
        host = httpx.URL(endpoint.base_url).host or "backend"
        self.lane = SCHEDULER.lane(
            f"{self.name}:{host}/{endpoint.model}", max(1, endpoint.max_in_flight), local=False
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            ep = self.endpoint
            self._client = httpx.AsyncClient(
                base_url=ep.base_url.rstrip("/") + "/",
                headers=ep.headers(),
                params=ep.params(),
                timeout=httpx.Timeout(ep.read_timeout_s, connect=ep.connect_timeout_s),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        message = self._upstream_message(await response.aread())
        raise BackendError(
            f"{self.name}: upstream returned {response.status_code}: {message}",
            code="upstream_error",
            backend=self.name,
        )

    def _upstream_message(self, body: bytes) -> str:
        try:
            data = json.loads(body)
            error = data.get("error", data) if isinstance(data, dict) else data
            message = error.get("message", error) if isinstance(error, dict) else error
            text = str(message)
        except ValueError:
            text = body.decode("utf-8", "replace")
        return self._scrub(text.strip())[:300] or "(no message)"

    def _scrub(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "[key]") if key else text

    def _transport_error(self, exc: httpx.HTTPError) -> BackendError:
        # str(exc) of httpx errors can include the URL; report only the kind of failure.
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeout(
                f"{self.name}: upstream timed out ({type(exc).__name__})", backend=self.name
            )
        return BackendError(
            f"{self.name}: upstream unreachable ({type(exc).__name__})",
            code="upstream_unavailable",
            backend=self.name,
        )


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """JSON payloads of a ``text/event-stream`` body, up to ``data: [DONE]``."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            payload = "\n".join(data)
            data = []
            if payload == "[DONE]":
                return
            yield json.loads(payload)
    if data and data != ["[DONE]"]:
        yield json.loads("\n".join(data))


# --------------------------------------------------------------------------- LLM


class OpenAIChatLLM(_HTTPBackend, LLM):
    """Streaming chat completions with tools; see the module docstring."""

    name = "openai-chat"

    def __init__(
        self,
        endpoint: OpenAIEndpoint,
        *,
        max_tokens_field: str = "max_tokens",
        vision: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        LLM.__init__(self, deadlines=deadlines)
        self._init_http(endpoint, transport)
        self.max_tokens_field = max_tokens_field
        self.accepts_images = vision

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters or {"type": "object", "properties": {}},
                    },
                }
                for t in request.tools
            ]
            choice = request.tool_choice
            body["tool_choice"] = (
                choice
                if choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": choice}}
            )
        if request.max_output_tokens is not None:
            body[self.max_tokens_field] = request.max_output_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.reasoning_effort is not None:
            body["reasoning_effort"] = request.reasoning_effort
        return body

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        due = request.pacer.due() if request.pacer is not None else None
        async with self.lane.hold(due, work="answer"):
            async for chunk in self._stream_now(request):
                yield chunk

    async def _stream_now(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        try:
            async with self._http().stream("POST", "chat/completions", json=self._body(request)) as response:
                await self._check(response)
                finish: str | None = None
                async for event in _sse_events(response):
                    if "error" in event:
                        message = self._upstream_message(json.dumps(event).encode())
                        raise BackendError(
                            f"{self.name}: upstream error: {message}",
                            code="upstream_error",
                        )
                    if event.get("usage"):
                        yield _usage(event["usage"])
                    for choice in event.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield TextDelta(delta["content"])
                        for call in delta.get("tool_calls") or ():
                            fn = call.get("function") or {}
                            yield ToolCallDelta(
                                index=int(call.get("index", 0)),
                                arguments=fn.get("arguments") or "",
                                name=fn.get("name"),
                                call_id=call.get("id"),
                            )
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                yield Finish(finish or "stop")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens", 0) or 0),
        output_tokens=int(usage.get("completion_tokens", 0) or 0),
        cached_tokens=int(details.get("cached_tokens", 0) or 0),
    )


# --------------------------------------------------------------------------- STT


def to_wav(audio: FloatAudio, sample_rate: int = MODEL_SAMPLE_RATE) -> bytes:
    """Mono float audio → a PCM16 WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(float_to_pcm16(audio))
    return buffer.getvalue()


class OpenAITranscriptionSTT(_HTTPBackend, STT):
    """``POST /audio/transcriptions`` with a WAV; see the module docstring."""

    name = "openai-transcription"

    def __init__(
        self,
        endpoint: OpenAIEndpoint,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        STT.__init__(self, deadlines=deadlines)
        self._init_http(endpoint, transport)

    async def _transcribe(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        if options.speculative:
            async with self.lane.speculate(work="transcribe-partial") as ticket:
                if ticket is None:
                    raise Skipped(self.name)
                return await self._transcribe_now(audio, options)
        async with self.lane.hold(work="transcribe"):
            return await self._transcribe_now(audio, options)

    async def _transcribe_now(self, audio: FloatAudio, options: TranscriptionOptions) -> Transcript:
        data = {"model": options.model or self.endpoint.model, "response_format": "json"}
        if options.language:
            data["language"] = options.language
        if options.prompt:
            data["prompt"] = options.prompt
        files = {"file": ("audio.wav", to_wav(audio), "audio/wav")}
        try:
            response = await self._http().post("audio/transcriptions", data=data, files=files)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        await self._check(response)
        try:
            text = str(response.json()["text"])
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"{self.name}: upstream answer has no text") from None
        return Transcript(
            text=text.strip(),
            language=options.language,
            audio_seconds=audio.size / MODEL_SAMPLE_RATE,
        )


# --------------------------------------------------------------------------- TTS


class OpenAISpeechTTS(_HTTPBackend, TTS):
    """``POST /audio/speech`` streamed as 24 kHz PCM; see the module docstring."""

    name = "openai-speech"

    def __init__(
        self,
        endpoint: OpenAIEndpoint,
        *,
        instructions: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        TTS.__init__(self, deadlines=deadlines)
        self._init_http(endpoint, transport)
        self.instructions = instructions

    async def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        async with self.lane.hold(request.due, work="speech"):
            async for chunk in self._synthesize_now(request):
                yield chunk

    async def _synthesize_now(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "input": request.text,
            "voice": request.voice,
            "response_format": "pcm",
            "speed": request.speed,
        }
        if self.instructions:
            body["instructions"] = self.instructions
        try:
            async with self._http().stream("POST", "audio/speech", json=body) as response:
                await self._check(response)
                carry = b""
                async for data in response.aiter_bytes():
                    data = carry + data
                    usable = len(data) - (len(data) % 2)
                    carry = data[usable:]
                    if usable:
                        yield data[:usable]
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

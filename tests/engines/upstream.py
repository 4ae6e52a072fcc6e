"""An OpenAI-compatible upstream on 127.0.0.1 for the network backend tests.

It speaks ``/v1/chat/completions`` (SSE), ``/v1/audio/transcriptions`` (multipart) and
``/v1/audio/speech`` (streamed PCM). Fault knobs ride in the request: a model name of
``fail-500`` answers 500, ``hang`` never answers until the server stops, ``slow`` sends
the first chunk and then stalls, and so does a chat whose last message contains
``[stall]`` (one caller's request stalls while the others' are answered). Every request
is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-test-secret-0123456789"


@dataclass
class Upstream:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], bytes]:
    """Fields and the ``file`` part of a multipart/form-data body (stdlib only)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    audio = b""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            audio = payload
        else:
            fields[str(name)] = payload.decode()
    return fields, audio


def _app(state: Upstream, release: asyncio.Event) -> Starlette:
    def authorised(request: Request) -> bool:
        return (
            request.headers.get("authorization") == f"Bearer {API_KEY}"
            or request.headers.get("api-key") == API_KEY
        )

    def fail() -> Response:
        return JSONResponse(
            {
                "error": {
                    "message": f"internal failure (key {API_KEY} must not leak)",
                    "type": "server_error",
                }
            },
            status_code=500,
        )

    async def chat(request: Request) -> Response:
        body = await request.json()
        state.requests.append(
            {
                "path": "chat",
                "headers": dict(request.headers),
                "query": dict(request.query_params),
                "body": body,
            }
        )
        if not authorised(request):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        model = body["model"]
        if model == "fail-500":
            return fail()
        if model == "hang":
            await release.wait()
            return fail()

        async def events() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                data = {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(data)}\n\n".encode()

            yield chunk({"role": "assistant", "content": ""})
            last = str((body.get("messages") or [{}])[-1].get("content") or "")
            if model == "slow" or "[stall]" in last:
                yield chunk({"content": "Hel"})
                await release.wait()
            if body.get("tools") and body.get("tool_choice") != "none":
                name = body["tools"][0]["function"]["name"]
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in ('{"city": ', '"Paris"}'):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                yield chunk({}, "tool_calls")
            else:
                for word in ("Hello", " from", " upstream."):
                    yield chunk({"content": word})
                yield chunk({}, "stop")
            usage = {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 4},
            }
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def transcriptions(request: Request) -> Response:
        form, audio = _parse_multipart(request.headers["content-type"], await request.body())
        state.requests.append(
            {
                "path": "transcriptions",
                "headers": dict(request.headers),
                "form": {k: v for k, v in form.items() if k != "file"},
                "file_bytes": len(audio),
            }
        )
        if not authorised(request):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        if form["model"] == "fail-500":
            return fail()
        if form["model"] == "hang":
            await release.wait()
            return fail()
        ok = audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
        return JSONResponse({"text": f"heard {len(audio) - 44} bytes" if ok else "not a wav"})

    async def speech(request: Request) -> Response:
        body = await request.json()
        state.requests.append({"path": "speech", "headers": dict(request.headers), "body": body})
        if not authorised(request):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        if body["model"] == "fail-500":
            return fail()

        async def pcm() -> AsyncIterator[bytes]:
            # 0.5 s of a 24 kHz tone in odd-sized pieces, to exercise sample alignment.
            import numpy as np

            t = np.arange(12_000) / 24_000
            data = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
            for start in range(0, len(data), 4801):
                yield data[start : start + 4801]
                if body["model"] == "slow":
                    await release.wait()

        return StreamingResponse(pcm(), media_type="application/octet-stream")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
        ]
    )


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    """Serve the fake upstream on an ephemeral 127.0.0.1 port in a background thread."""
    loop = asyncio.new_event_loop()
    release = asyncio.Event()
    state = Upstream(base_url="")
    config = uvicorn.Config(
        _app(state, release), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    # Bind and listen before serving: clients may connect at once, no start-up race.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(release.set)
        server.should_exit = True
        thread.join(10)
        loop.close()
        sock.close()

"""Images end to end: a vision-capable OpenAI-compatible backend receives the image parts;
a profile whose LLM cannot see refuses them. The official SDK is the client."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from rtgate.server.app import build_profiles
from rtgate.server.settings import Settings
from rtgate.testing.server import running_server
from rtgate.testing.validate import validate_server_event

from .test_config_profiles import KEY_ENV, write_config
from .upstream import API_KEY, Upstream

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
IMAGE_URL = f"data:image/png;base64,{PNG}"


def llm_profile(upstream: Upstream, **options: str) -> str:
    extra = "".join(f", {k} = {v}" for k, v in options.items())
    return (f'[profiles.default]\nllm = {{ kind = "openai", base_url = "{upstream.base_url}", '
            f'api_key_env = "{KEY_ENV}", model = "vision-llm"{extra} }}\n')


async def image_turn(base_url: str) -> list[dict[str, Any]]:
    """A user message with text and an image, then a response; every event up to
    ``response.done`` or the first ``error``."""
    events: list[dict[str, Any]] = []
    async with AsyncOpenAI(base_url=base_url, api_key="sk-any").realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {"type": "input_image", "image_url": IMAGE_URL, "detail": "low"}]})
        await conn.response.create()
        while not events or events[-1]["type"] not in ("response.done", "error"):
            event = json.loads(await conn.recv_bytes())
            validate_server_event(event)
            events.append(event)
    return events


async def test_vision_backend_receives_image_parts(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat request carries the text and an image_url part with the data URL and detail."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(tmp_path, llm_profile(upstream))
    with running_server(Settings(config_file=config), profiles=build_profiles, vad_factory=lambda: None) as h:
        events = await image_turn(h.base_url)
    assert events[-1]["type"] == "response.done", events[-1]
    assert events[-1]["response"]["status"] == "completed"
    chat = [r for r in upstream.requests if r["path"] == "chat"][-1]["body"]
    user = [m for m in chat["messages"] if m["role"] == "user"][-1]
    assert user["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}},
    ]


async def test_backend_without_vision_refuses_images(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vision = false: the image is refused with image_input_not_supported, nothing is sent."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(tmp_path, llm_profile(upstream, vision="false"))
    before = len(upstream.requests)
    with running_server(Settings(config_file=config), profiles=build_profiles, vad_factory=lambda: None) as h:
        events = await image_turn(h.base_url)
    error = next(e for e in events if e["type"] == "error")
    assert error["error"]["code"] == "image_input_not_supported"
    assert error["error"]["param"] == "item.content[1].image_url"
    assert len(upstream.requests) == before


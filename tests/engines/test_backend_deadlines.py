"""The ``backend_*_s`` settings are the deadlines of the engines the server builds.

The engine is the OpenAI-compatible network LLM on the in-test upstream, whose ``slow``
model sends its first chunk and then stalls: how long the response waits before it fails
with ``backend_timeout`` is the ``backend_next_chunk_s`` setting, end to end through the
official SDK.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from rtgate.pipeline.base import Deadlines
from rtgate.server.app import build_profiles
from rtgate.server.settings import Settings
from rtgate.testing.server import running_server
from rtgate.testing.validate import validate_server_event

from .upstream import API_KEY, Upstream

KEY_ENV = "RTGATE_TEST_UPSTREAM_KEY"


def config_file(tmp_path: Path, upstream: Upstream, llm_extra: str = "") -> str:
    common = f'base_url = "{upstream.base_url}", api_key_env = "{KEY_ENV}"'
    path = tmp_path / "rtgate.toml"
    path.write_text(
        "[profiles.default]\n"
        f'stt = {{ kind = "openai", {common}, model = "stt" }}\n'
        f'llm = {{ kind = "openai", {common}, model = "slow"{llm_extra} }}\n'
        f'tts = {{ kind = "openai", {common}, model = "tts" }}\n'
    )
    return str(path)


def test_the_documented_defaults_are_what_engines_get() -> None:
    """Settings() and an engine built without settings use the same 30/15/300 s."""
    assert Settings().backend.deadlines() == Deadlines() == Deadlines(30.0, 15.0, 300.0)


def test_settings_reach_every_engine_and_a_table_overrides_key_by_key(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    settings = Settings(config_file=config_file(tmp_path, upstream, ", deadlines = { total_s = 9.0 }"),
                        backend_first_chunk_s=1.5, backend_next_chunk_s=0.5, backend_total_s=60.0)
    default = build_profiles(settings)["default"]
    assert default.stt.deadlines == Deadlines(1.5, 0.5, 60.0)
    assert default.tts.deadlines == Deadlines(1.5, 0.5, 60.0)
    assert default.llm.deadlines == Deadlines(1.5, 0.5, 9.0)


async def text_turn(base_url: str) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-any")
    events: list[dict[str, Any]] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
        )
        await conn.response.create()
        while not events or events[-1]["type"] != "response.done":
            event = json.loads(await conn.recv_bytes())
            validate_server_event(event)
            events.append(event)
    return events


async def test_a_stalled_backend_times_out_after_backend_next_chunk_s(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``backend_next_chunk_s = 0.5`` a stream that stalls fails after ~0.5 s (the
    default, 15 s, would hold the response that long)."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    settings = Settings(config_file=config_file(tmp_path, upstream), backend_next_chunk_s=0.5)
    with running_server(settings, profiles=build_profiles, vad_factory=lambda: None) as handle:
        started = time.monotonic()
        events = await text_turn(handle.base_url)
        elapsed = time.monotonic() - started
    response = events[-1]["response"]
    assert response["status"] == "failed"
    assert response["status_details"]["error"]["code"] == "backend_timeout"
    assert "within 0.5 s" in response["status_details"]["error"]["message"]
    assert elapsed < 10.0

"""MCP tools with a network LLM backend: the official SDK as client, the in-test
OpenAI-compatible upstream as the model, a real MCP server on loopback."""

from __future__ import annotations

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
from .test_images import llm_profile
from .upstream import API_KEY, Upstream


async def test_network_backend_sees_mcp_tools_as_functions(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network LLM gets a session's listed MCP tools as chat-completions functions; its
    call becomes an mcp_call that rtgate runs against the real MCP server."""
    from rtgate.testing.mcp_server import running_mcp_servers

    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = write_config(tmp_path, llm_profile(upstream))
    with (
        running_mcp_servers() as mcp,
        running_server(Settings(config_file=config), profiles=build_profiles, vad_factory=lambda: None) as h,
    ):
        client = AsyncOpenAI(base_url=h.base_url, api_key="sk-any")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            tool = {"type": "mcp", "server_label": "t", "server_url": mcp.plain, "require_approval": "never",
                    "allowed_tools": ["shout"]}
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [tool]})
            events: list[dict[str, Any]] = []
            while not events or events[-1]["type"] != "mcp_list_tools.completed":
                events.append(json.loads(await conn.recv_bytes()))
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Shout it."}]})
            await conn.response.create()
            while events[-1]["type"] != "response.done":
                events.append(json.loads(await conn.recv_bytes()))
                validate_server_event(events[-1])
    chats = [r["body"] for r in upstream.requests if r["path"] == "chat"]
    assert chats[-2]["tools"][0]["function"]["name"] == "shout"
    assert chats[-2]["tools"][0]["function"]["parameters"]["required"] == ["text"]
    call = events[-1]["response"]["output"][0]
    # The fake upstream always calls its first tool with {"city": "Paris"}: the MCP server
    # rejects the arguments, and the model hears the error.
    assert call["type"] == "mcp_call" and call["name"] == "shout" and call["arguments"] == '{"city": "Paris"}'
    assert call["error"]["type"] == "tool_execution_error"
    assert chats[-1]["messages"][-1]["role"] == "tool"

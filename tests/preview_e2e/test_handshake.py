"""Preview detection at the WebSocket handshake (SPEC §1.4): subprotocol, header, neither."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import ServerHandle, running_server

pytestmark = pytest.mark.e2e

KEY = "sk-test"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=(KEY,)), vad_factory=FakeVAD) as handle:
        yield handle


async def _first_types(url: str, **kwargs: object) -> tuple[str | None, list[str]]:
    async with connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        first = [json.loads(await ws.recv())["type"] for _ in range(2)]
        return ws.subprotocol, first


async def test_browser_subprotocols_select_realtime_and_speak_preview(server: ServerHandle) -> None:
    """realtime + insecure key + openai-beta.realtime-v1: answered 'realtime', Preview events."""
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]
    chosen, first = await _first_types(
        f"{server.ws_url}/v1/realtime?model=gpt-4o-realtime-preview",
        subprotocols=protocols,
    )
    assert chosen == "realtime"
    assert first == ["session.created", "conversation.created"]


async def test_beta_header_speaks_preview(server: ServerHandle) -> None:
    """OpenAI-Beta: realtime=v1 on the Azure Preview path selects the bridge."""
    chosen, first = await _first_types(
        f"{server.ws_url}/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o-realtime-preview",
        additional_headers={"api-key": KEY, "OpenAI-Beta": "realtime=v1"},
    )
    assert chosen is None
    assert first == ["session.created", "conversation.created"]


async def test_ga_client_is_not_bridged(server: ServerHandle) -> None:
    """Without the beta header or subprotocol the session speaks GA (no conversation.created)."""
    async with connect(
        f"{server.ws_url}/v1/realtime?model=gpt-realtime",
        additional_headers={"Authorization": f"Bearer {KEY}"},
    ) as ws:
        created = json.loads(await ws.recv())
    assert created["type"] == "session.created"
    assert created["session"]["type"] == "realtime"

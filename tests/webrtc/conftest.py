"""A real rtgate with fake STT/LLM/TTS and an energy VAD, for WebRTC calls on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.validate import validate_server_event
from rtgate.transport.webrtc import live_peer_connections


def require_ice_host() -> None:
    """Skip, saying why, on a machine whose only interface is loopback: aioice gathers no
    127.0.0.1 host candidates, so no call could connect (the tests would time out)."""
    from aioice.ice import get_host_addresses

    if not get_host_addresses(use_ipv4=True, use_ipv6=True):
        pytest.skip("WebRTC calls need a non-loopback network interface (aioice gathers no "
                    "127.0.0.1 host candidates)")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    require_ice_host()
    settings = Settings(api_keys=("sk-test",), webrtc_media_timeout_s=2.0,
                        webrtc_ice_connect_timeout_s=10.0)
    with running_server(
        settings,
        profiles=fake_profiles(FakeLLM("It is noon."), FakeTTS(ms_per_word=600), FakeSTT("what time is it")),
        vad_factory=FakeVAD,
    ) as handle:
        yield handle


def client_for(handle: ServerHandle, key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=handle.base_url, api_key=key)


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll a condition across the network/threads, with a deadline."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def sessions(handle: ServerHandle) -> int:
    return int(httpx.get(f"{handle.http_url}/healthz").json()["sessions"])


def no_calls_left(handle: ServerHandle) -> bool:
    return sessions(handle) == 0 and live_peer_connections() == 0


class Events:
    """Reads raw frames from an SDK WebSocket connection, validating each strictly."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def next(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.conn.recv_bytes(), 20))
        validate_server_event(event)
        return event  # type: ignore[no-any-return]

    async def until(self, type_: str) -> list[dict[str, Any]]:
        out = []
        while True:
            out.append(await self.next())
            if out[-1]["type"] == type_:
                return out

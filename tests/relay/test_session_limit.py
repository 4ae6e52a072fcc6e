"""``max_sessions`` counts every session of the process alike — local and relayed
WebSocket sessions and WebRTC calls — through the one session host (server/host.py): past
it, each entry point refuses with ``server_busy`` in its own shape, and a session that
ends gives its slot back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.validate import validate_server_event

from .conftest import CLIENT_KEY, KEY_ENV, PROMPT_S, RELAY_LIMITS, Relay, relay_until_closed

pytestmark = pytest.mark.e2e

CONFIG = """
[upstreams.rtgate]
kind = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
api_key_env = "{key_env}"
model = "gpt-realtime"

[[routes]]
model = "relayed-*"
upstream = "rtgate"
"""
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
"""Enough of an offer to pass the shape check; a refused call never applies it."""


@pytest.fixture(scope="module")
def one_session(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A gateway with room for one session: ``gpt-realtime`` is local, ``relayed-*`` goes
    to the relay fixture's upstream rtgate (which holds ``KEY_ENV``'s key)."""
    config = Path(tmp_path_factory.mktemp("limit")) / "rtgate.toml"
    config.write_text(CONFIG.format(upstream=relay.upstream.port, key_env=KEY_ENV))
    settings = Settings(api_keys=(CLIENT_KEY,), config_file=str(config), max_sessions=1,
                        **RELAY_LIMITS)
    with running_server(settings, profiles=fake_profiles(), vad_factory=FakeVAD) as handle:
        yield handle


def client(handle: ServerHandle) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=handle.base_url, api_key=CLIENT_KEY)


async def first_event(conn: object) -> dict[str, object]:
    event = json.loads(await asyncio.wait_for(conn.recv_bytes(), PROMPT_S))  # type: ignore[attr-defined]
    validate_server_event(event)
    assert isinstance(event, dict)
    return event


async def sessions(handle: ServerHandle, expected: int) -> None:
    """Wait until ``/healthz`` counts ``expected`` sessions (a close is handled after the
    client's side returns), bounded."""
    deadline = time.monotonic() + PROMPT_S
    async with httpx.AsyncClient() as http:
        while (count := (await http.get(f"{handle.http_url}/healthz")).json()["sessions"]) != expected:
            assert time.monotonic() < deadline, f"{count} sessions, expected {expected}"
            await asyncio.sleep(0.05)


def assert_busy(error: dict[str, object]) -> None:
    assert error["type"] == "server_error" and error["code"] == "server_busy", error
    assert "limit of 1 sessions" in str(error["message"])


async def test_a_local_session_takes_the_only_slot_from_every_entry_point(
    one_session: ServerHandle,
) -> None:
    async with client(one_session).realtime.connect(model="gpt-realtime") as held:
        assert (await first_event(held))["type"] == "session.created"
        await sessions(one_session, 1)
        relayed = await relay_until_closed(one_session, "relayed-one")
        assert [e["type"] for e in relayed.events] == ["error"]
        for event in relayed.events:
            validate_server_event(event)
        assert_busy(relayed.error())
        assert (relayed.close_code, relayed.close_reason) == (1013, "server_error.server_busy")
        async with client(one_session).realtime.connect(model="gpt-realtime") as refused:
            error = await first_event(refused)
            assert error["type"] == "error"
            assert_busy(error["error"])  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{one_session.base_url}/realtime/calls", content=OFFER,
                                     headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                              "Content-Type": "application/sdp"})
        assert answer.status_code == 503, answer.text
        assert_busy(answer.json()["error"])
    await sessions(one_session, 0)


async def test_a_relayed_session_holds_its_slot_and_gives_it_back(one_session: ServerHandle) -> None:
    async with client(one_session).realtime.connect(model="relayed-two") as relayed:
        assert (await first_event(relayed))["type"] == "session.created"  # the upstream's
        await sessions(one_session, 1)
        async with client(one_session).realtime.connect(model="gpt-realtime") as refused:
            error = await first_event(refused)
            assert error["type"] == "error"
            assert_busy(error["error"])  # type: ignore[arg-type]
    await sessions(one_session, 0)
    async with client(one_session).realtime.connect(model="gpt-realtime") as local:
        assert (await first_event(local))["type"] == "session.created"

"""The relay with the official ``openai`` SDK: client → gateway rtgate → upstream rtgate.

Every event the client receives is validated strictly against the SDK's GA models.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from rtgate.testing.audio import chunks, noise_pcm
from rtgate.testing.validate import validate_server_event

from .conftest import CLIENT_KEY, PROMPT_S, UPSTREAM_KEY, Relay

pytestmark = pytest.mark.e2e


class Events:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def next(self) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.conn.recv_bytes(), PROMPT_S))
        validate_server_event(event)
        return event

    async def until(self, type_: str) -> list[dict[str, Any]]:
        seen = []
        while True:
            seen.append(await self.next())
            if seen[-1]["type"] == type_:
                return seen


def client(relay: Relay, key: str = CLIENT_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=relay.gateway.base_url, api_key=key)


async def test_text_turn_through_the_relay(relay: Relay) -> None:
    """SPEC §10.1 through the relay: the upstream's session.created, then a complete text turn."""
    async with client(relay).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        created = await ev.next()
        assert created["type"] == "session.created"
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.until("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi relay"}]})
        await conn.response.create()
        events = await ev.until("response.done")
        kinds = [e["type"] for e in events]
        assert "response.output_text.delta" in kinds
        assert events[-1]["response"]["status"] == "completed"


async def test_audio_append_and_commit_through_the_relay(relay: Relay) -> None:
    """Manual turns: 24 kHz appends and a commit go upstream; audio deltas come back."""
    async with client(relay).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await ev.until("session.updated")
        for chunk in chunks(noise_pcm(600, level=0.05), 20):
            await conn.input_audio_buffer.append(audio=chunk)
        await conn.input_audio_buffer.commit()
        committed = await ev.until("input_audio_buffer.committed")
        assert committed[-1]["item_id"]
        await conn.response.create()
        events = await ev.until("response.done")
        assert any(e["type"] == "response.output_audio.delta" for e in events)
        assert events[-1]["response"]["status"] == "completed"


async def test_upstream_error_events_are_relayed(relay: Relay) -> None:
    """A client mistake is answered by the upstream's own error, event_id echoed, session alive."""
    async with client(relay).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        await conn.input_audio_buffer.commit(event_id="commit_1")
        error = (await ev.until("error"))[-1]["error"]
        assert error["code"] == "input_audio_buffer_commit_empty"
        assert error["event_id"] == "commit_1"
        await conn.session.update(session={"type": "realtime", "instructions": "still here"})
        assert (await ev.until("session.updated"))[-1]["session"]["instructions"] == "still here"


async def test_ephemeral_key_for_a_relayed_model(relay: Relay) -> None:
    """client_secrets mints an rtgate key; with it the relayed session gets the bound config."""
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        reply = await http.post("/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                json={"session": {"type": "realtime", "model": "gpt-realtime",
                                                  "instructions": "Bound by the key."}})
    assert reply.status_code == 200, reply.text
    key = reply.json()["value"]
    assert key.startswith("ek_") and UPSTREAM_KEY not in reply.text
    async with client(relay, key).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        updated = (await ev.until("session.updated"))[-1]
        assert updated["session"]["instructions"] == "Bound by the key."


async def test_relay_metrics_and_no_leaked_sessions(relay: Relay) -> None:
    """After the sessions above: per-upstream counters and latency; no session left open."""
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + PROMPT_S
        while True:  # sessions close asynchronously after the client's close: poll, bounded
            gateway = (await http.get(f"{relay.gateway.http_url}/healthz")).json()["sessions"]
            upstream = (await http.get(f"{relay.upstream.http_url}/healthz")).json()["sessions"]
            if (gateway, upstream) == (0, 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert (gateway, upstream) == (0, 0)
        text = (await http.get(f"{relay.gateway.http_url}/metrics",
                               headers={"Authorization": f"Bearer {CLIENT_KEY}"})).text
    assert 'rtgate_relay_sessions_active{upstream="rtgate"} 0' in text
    assert 'rtgate_relay_events_total{upstream="rtgate",direction="upstream_to_client",type="response.done"}' in text
    assert ('rtgate_relay_events_total{upstream="rtgate",direction="client_to_upstream",'
            'type="input_audio_buffer.append"}') in text
    assert 'rtgate_relay_added_latency_seconds_count{upstream="rtgate",direction="upstream_to_client"}' in text
    assert 'rtgate_relay_upstream_connect_seconds_count{upstream="rtgate"}' in text


async def test_client_secrets_upstream_option_mints_at_the_upstream(relay: Relay) -> None:
    """``client_secrets = "upstream"``: the request is forwarded with the upstream key and the
    upstream's model; the key works at the upstream directly, not at the gateway."""
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        reply = await http.post("/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                json={"session": {"type": "realtime", "model": "direct-model",
                                                  "instructions": "Minted upstream."}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["session"]["model"] == "gpt-realtime" and UPSTREAM_KEY not in reply.text
    upstream = AsyncOpenAI(base_url=relay.upstream.base_url, api_key=body["value"])
    async with upstream.realtime.connect(model="gpt-realtime") as conn:
        created = await Events(conn).next()
        assert created["session"]["instructions"] == "Minted upstream."
    async with client(relay, body["value"]).realtime.connect(model="gpt-realtime") as conn:
        assert (await Events(conn).next())["error"]["code"] == "invalid_api_key"


async def test_client_secrets_upstream_unreachable_is_502(relay: Relay) -> None:
    """The upstream cannot be reached to mint: HTTP 502, code upstream_unavailable, no secrets."""
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        reply = await http.post("/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                                json={"session": {"type": "realtime", "model": "mintrefused-model"}})
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "upstream_unavailable"
    assert UPSTREAM_KEY not in reply.text

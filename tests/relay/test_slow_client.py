"""A relayed client that stops reading is closed after ``send_deadline_s`` (as the local
pipeline does), the upstream is closed, and nothing stays open; and WebRTC calls for a
relayed model are refused with a clear error."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import CLIENT_KEY, PROMPT_S, RELAY_LIMITS, Relay

pytestmark = pytest.mark.e2e


async def _metrics(relay: Relay) -> str:
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        reply = await http.get("/metrics", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status_code == 200
    return reply.text


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _poll(condition, what: str, within: float = PROMPT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


async def test_client_that_stops_reading_is_closed_and_everything_is_released(relay: Relay) -> None:
    """The upstream floods audio deltas; the client never reads. The gateway's send blocks,
    and past send_deadline_s the session ends: counted as client_not_reading with close 1008,
    the upstream closed with 1000, the relayed and server session counts back to 0, and the
    client's connection dropped (its close frame could never be written: 1006 at the client)."""
    active = 'rtgate_relay_sessions_active{upstream="faults"}'
    faults = 'rtgate_relay_faults_total{upstream="faults",reason="client_not_reading"}'
    closes = 'rtgate_relay_closes_total{upstream="faults",code="1008"}'
    before = await _metrics(relay)
    relay.faults.flood_closed.clear()
    started = time.monotonic()
    async with connect(f"{relay.gateway.ws_url}/v1/realtime?model=fault-flood",
                       additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                       compression=None, proxy=None, ping_interval=None) as ws:

        async def ended() -> bool:
            text = await _metrics(relay)
            return (_value(text, faults) > _value(before, faults) and _value(text, active) == 0
                    and _value(text, closes) > _value(before, closes))

        await _poll(ended, "the gateway ends the session of a client that does not read")
        elapsed = time.monotonic() - started
        assert elapsed >= RELAY_LIMITS["send_deadline_s"]
        assert await asyncio.to_thread(relay.faults.flood_closed.wait, PROMPT_S)
        assert relay.faults.flood_closes[-1] == 1000

        async def idle() -> bool:
            async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
                return bool((await http.get("/healthz")).json()["sessions"] == 0)

        await _poll(idle, "the gateway's session count returns to 0")
        # Now read: what was buffered, then the end of a connection the gateway dropped.
        async with asyncio.timeout(PROMPT_S):
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
        assert ws.close_code == 1006


async def test_webrtc_call_for_a_relayed_model_is_refused_clearly(relay: Relay) -> None:
    """POST /v1/realtime/calls for a model routed upstream: 400 unsupported_for_relayed_model
    naming the model and the alternatives, not invalid_model."""
    offer = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        reply = await http.post("/v1/realtime/calls?model=fault-ok", content=offer,
                                headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                         "Content-Type": "application/sdp"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "unsupported_for_relayed_model"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "session.model"
    assert "'fault-ok'" in error["message"] and "'faults'" in error["message"]
    assert "WebSocket" in error["message"] and "/realtime/calls" in error["message"]

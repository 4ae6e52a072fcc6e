"""Relay faults against a fault-injecting upstream: each gives the client a clear ``error``
and the right close, promptly (bounded time, no sleeps)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import AZURE_KEY, CLIENT_KEY, PROMPT_S, UPSTREAM_KEY, Relay, relay_until_closed

pytestmark = pytest.mark.e2e

RESPONSE_CREATE = json.dumps({"type": "response.create"})


def sha256(frame: str | bytes) -> str:
    return hashlib.sha256(frame.encode() if isinstance(frame, str) else frame).hexdigest()


def assert_fault(outcome, code: str, close_code: int) -> None:  # type: ignore[no-untyped-def]
    error = outcome.error()
    assert error["code"] == code, outcome.events
    assert error["type"] == "server_error"
    assert outcome.close_code == close_code, (outcome.close_code, outcome.close_reason)
    assert outcome.close_reason == f"server_error.{code}"
    assert outcome.elapsed_s < PROMPT_S
    for secret in (UPSTREAM_KEY, AZURE_KEY, CLIENT_KEY):
        assert secret not in json.dumps(outcome.events)


async def test_connection_refused_is_upstream_unavailable_1013(relay: Relay) -> None:
    """Nothing listening upstream: error upstream_unavailable ("connection refused"), close 1013."""
    outcome = await relay_until_closed(relay.gateway, "refused-model")
    assert_fault(outcome, "upstream_unavailable", 1013)
    assert "connection refused" in outcome.error()["message"]
    assert "'refused'" in outcome.error()["message"]


async def test_upgrade_never_answered_times_out_1013(relay: Relay) -> None:
    """A listener that never answers the upgrade: upstream_unavailable after connect_timeout_s."""
    outcome = await relay_until_closed(relay.gateway, "silent-model")
    assert_fault(outcome, "upstream_unavailable", 1013)
    assert "timed out" in outcome.error()["message"]


async def test_http_rejection_is_upstream_rejected_1011(relay: Relay) -> None:
    """HTTP 401 on the upgrade (a wrong upstream key): upstream_rejected naming the status, 1011."""
    outcome = await relay_until_closed(relay.gateway, "fault-http401")
    assert_fault(outcome, "upstream_rejected", 1011)
    assert "HTTP 401" in outcome.error()["message"]


async def test_missing_credential_names_the_variable_not_a_key(relay: Relay) -> None:
    """api_key_env unset: upstream_misconfigured naming the variable, close 1011, no connection."""
    before = len(relay.faults.headers)
    outcome = await relay_until_closed(relay.gateway, "nokey-model")
    assert_fault(outcome, "upstream_misconfigured", 1011)
    assert "RTGATE_TEST_RELAY_UNSET_KEY" in outcome.error()["message"]
    assert len(relay.faults.headers) == before


async def test_upstream_close_right_after_upgrade_passes_its_code(relay: Relay) -> None:
    """The upstream closes at once with 1011: the client gets close 1011 with its reason."""
    outcome = await relay_until_closed(relay.gateway, "fault-close")
    assert outcome.close_code == 1011
    assert outcome.close_reason == "upstream broke"
    assert outcome.elapsed_s < PROMPT_S


async def test_reset_mid_stream_is_connection_lost_1011(relay: Relay) -> None:
    """TCP reset after session.created: session.created relayed, then upstream_connection_lost, 1011."""
    outcome = await relay_until_closed(relay.gateway, "fault-reset", send=(RESPONSE_CREATE,))
    assert outcome.events[0]["type"] == "session.created"
    assert_fault(outcome, "upstream_connection_lost", 1011)


async def test_stall_after_upgrade_is_detected_by_the_deadline(relay: Relay) -> None:
    """Upstream accepts and stays silent: upstream_timeout within answer_deadline_s, close 1011."""
    outcome = await relay_until_closed(relay.gateway, "fault-stall")
    assert_fault(outcome, "upstream_timeout", 1011)
    assert 1.0 < outcome.elapsed_s < 5.0


async def test_stall_after_a_client_event_is_detected(relay: Relay) -> None:
    """Upstream silent after response.create: upstream_timeout, close 1011, within seconds."""
    outcome = await relay_until_closed(relay.gateway, "fault-stall-later", send=(RESPONSE_CREATE,))
    assert outcome.events[0]["type"] == "session.created"
    assert_fault(outcome, "upstream_timeout", 1011)
    assert outcome.elapsed_s < 5.0


async def test_deaf_upstream_is_caught_by_the_keepalive(relay: Relay) -> None:
    """Upstream stops answering pings while no answer is due: upstream_timeout after ping
    interval + timeout (1 s + 1 s here), close 1011."""
    outcome = await relay_until_closed(relay.gateway, "fault-deaf")
    assert outcome.events[0]["type"] == "session.created"
    assert_fault(outcome, "upstream_timeout", 1011)
    assert "keepalive" in outcome.error()["message"]
    assert outcome.elapsed_s < 6.0


async def test_session_created_does_not_answer_an_earlier_client_event(relay: Relay) -> None:
    """response.create reaches the upstream before session.created: session.created pays
    only the connect, the response.create is still owed, the stall is detected."""
    outcome = await relay_until_closed(relay.gateway, "fault-created-late", send=(RESPONSE_CREATE,))
    assert outcome.events[0]["type"] == "session.created"
    assert_fault(outcome, "upstream_timeout", 1011)
    assert outcome.elapsed_s < 5.0


@pytest.mark.parametrize(
    ("model", "close_code", "code"),
    [("fault-error4000", 4000, "beta_api_shape_disabled"), ("fault-error3000", 3000, "invalid_api_key")],
)
async def test_upstream_error_and_close_code_pass_through(
    relay: Relay, model: str, close_code: int, code: str
) -> None:
    """The upstream's error event and close code (4000, 3000) and reason reach the client as sent."""
    outcome = await relay_until_closed(relay.gateway, model)
    assert [e["type"] for e in outcome.events] == ["error"]
    assert outcome.events[0]["error"]["code"] == code
    assert outcome.close_code == close_code
    assert outcome.close_reason == f"invalid_request_error.{code}"


async def test_client_disconnect_closes_the_upstream(relay: Relay) -> None:
    """The client goes away: the relay closes its upstream socket (1000) promptly."""
    relay.faults.watch_closed.clear()
    async with connect(f"{relay.gateway.ws_url}/v1/realtime?model=fault-watch",
                       additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"}, proxy=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), PROMPT_S))["type"] == "session.created"
    assert await asyncio.to_thread(relay.faults.watch_closed.wait, PROMPT_S)
    assert relay.faults.watch_closes[-1] == 1000


async def test_frames_pass_verbatim_with_the_upstream_key(relay: Relay) -> None:
    """OpenAI kind: Bearer <upstream key>, the client's model; text and binary frames reach
    the upstream byte for byte (audio not re-encoded, key order and spacing kept)."""
    frame = '{"type":"conversation.item.create",  "item": {"type":"message","role":"user","content":[]}}'
    async with connect(f"{relay.gateway.ws_url}/v1/realtime?model=fault-ok",
                       additional_headers={"Authorization": f"Bearer {CLIENT_KEY}"}, proxy=None) as ws:
        await asyncio.wait_for(ws.recv(), PROMPT_S)
        await ws.send(frame)
        echo = json.loads(await asyncio.wait_for(ws.recv(), PROMPT_S))
        assert echo["error"]["message"] == f"conversation.item.create {sha256(frame)}"
        audio = '{"audio": "' + base64.b64encode(bytes(range(256)) * 40).decode() + '", "type":"input_audio_buffer.append"}'
        await ws.send(audio)
        echo = json.loads(await asyncio.wait_for(ws.recv(), PROMPT_S))
        assert echo["error"]["message"] == f"input_audio_buffer.append {sha256(audio)}"
        binary = b"\x00binary\xff"
        await ws.send(binary)
        echo = json.loads(await asyncio.wait_for(ws.recv(), PROMPT_S))
        assert echo["error"]["message"] == f"binary {sha256(binary)}"
    headers, path = relay.faults.headers[-1], relay.faults.paths[-1]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(headers)
    assert "api-key" not in headers and "openai-beta" not in headers
    assert path == "/v1/realtime?model=fault-ok"


async def test_azure_kind_sends_api_key_and_the_upstream_model(relay: Relay) -> None:
    """Azure kind: ``api-key`` header, base_url path kept, the configured upstream model."""
    async with connect(f"{relay.gateway.ws_url}/openai/v1/realtime?model=azure-deployment",
                       additional_headers={"api-key": CLIENT_KEY}, proxy=None) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), PROMPT_S))["type"] == "session.created"
    headers, path = relay.faults.headers[-1], relay.faults.paths[-1]
    assert headers["api-key"] == AZURE_KEY
    assert "authorization" not in headers
    assert path == "/openai/v1/realtime?model=fault-ok"


async def test_metrics_count_faults_and_need_a_key(relay: Relay) -> None:
    """GET /metrics: 401 without a key; fault counters and close codes by upstream, no secrets."""
    await relay_until_closed(relay.gateway, "refused-model")
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as http:
        assert (await http.get("/metrics")).status_code == 401
        reply = await http.get("/metrics", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status_code == 200
    text = reply.text
    assert 'rtgate_relay_faults_total{upstream="refused",reason="upstream_unavailable"}' in text
    assert 'rtgate_relay_closes_total{upstream="refused",code="1013"}' in text
    assert UPSTREAM_KEY not in text and CLIENT_KEY not in text

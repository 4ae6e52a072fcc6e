"""WebRTC calls (SPEC §1.3) with the official SDK and aiortc as the browser, on loopback."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from rtgate.server.ephemeral import EphemeralKeyStore, derive_secret
from rtgate.testing.server import ServerHandle

from .conftest import Events, client_for, no_calls_left, sessions, wait_for
from .peer import BrowserPeer

pytestmark = pytest.mark.e2e

SESSION = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "Answer briefly.",
    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
}


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


async def test_spoken_question_gets_transcript_and_audio_over_raw_sdp_with_ephemeral_key(
    server: ServerHandle,
) -> None:
    """Raw application/sdp + ek_ key: bound session, speech in, transcript and Opus audio out."""
    secret = await client_for(server).realtime.client_secrets.create(session=SESSION)  # type: ignore[arg-type]
    peer = BrowserPeer()
    try:
        raw = await client_for(server, secret.value).realtime.calls.with_raw_response.create(
            sdp=await peer.offer()
        )
        assert raw.status_code == 201
        assert raw.headers["content-type"].startswith("application/sdp")
        assert raw.headers["location"].startswith("/v1/realtime/calls/rtc_")
        await peer.accept(raw.http_response.text)
        created = (await peer.until("session.created"))[-1]
        assert created["session"]["instructions"] == "Answer briefly."
        peer.mic.speak(0.6)
        events = await peer.until("output_audio_buffer.stopped")
        seen = types(events)
        for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                         "input_audio_buffer.committed", "response.created",
                         "output_audio_buffer.started", "response.done"):
            assert expected in seen, (expected, seen)
        assert "response.output_audio.delta" not in seen
        assert seen.index("output_audio_buffer.started") < seen.index("output_audio_buffer.stopped")
        done = next(e for e in events if e["type"] == "response.done")
        assert done["response"]["status"] == "completed"
        started = next(e for e in events if e["type"] == "output_audio_buffer.started")
        assert started["response_id"] == done["response"]["id"]
        if not any(e["type"].endswith("transcription.completed") for e in peer.seen):
            await peer.until("conversation.item.input_audio_transcription.completed")
        transcript = next(e for e in peer.seen if e["type"].endswith("transcription.completed"))
        assert transcript["transcript"] == "what time is it"
        await wait_for(lambda: peer.loud_frames >= 6)  # the jitter buffer lags playback
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(server))


async def test_multipart_offer_with_session_and_sideband_control(server: ServerHandle) -> None:
    """Multipart sdp+session with a standard key; a ?call_id= sideband sees and steers the call."""
    client = client_for(server)
    peer = BrowserPeer(label="realtime-channel")
    try:
        raw = await client.realtime.calls.with_raw_response.create(
            sdp=await peer.offer(), session={**SESSION, "output_modalities": ["text"]}  # type: ignore[arg-type]
        )
        assert raw.status_code == 201
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        await peer.accept(raw.http_response.text)
        created = (await peer.until("session.created"))[-1]
        assert created["session"]["output_modalities"] == ["text"]
        async with client.realtime.connect(call_id=call_id) as sideband:
            await sideband.session.update(session={"type": "realtime", "instructions": "Be terse."})
            updated = Events(sideband)
            assert (await updated.until("session.updated"))[-1]["session"]["instructions"] == "Be terse."
            on_peer = (await peer.until("session.updated"))[-1]
            assert on_peer["session"]["instructions"] == "Be terse."
            await sideband.response.create()
            done = (await updated.until("response.done"))[-1]
            assert done["response"]["output"][0]["content"][0]["text"] == "It is noon."
            assert (await peer.until("response.done"))[-1]["response"]["id"] == done["response"]["id"]
        hung = await client.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
        assert hung.status_code == 200
        await wait_for(lambda: peer.pc.connectionState in ("closed", "failed"))
        await wait_for(lambda: no_calls_left(server))
        with pytest.raises(openai.NotFoundError):
            await client.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
    finally:
        await peer.close()


async def test_output_audio_buffer_clear_flushes_playback_at_once(server: ServerHandle) -> None:
    """output_audio_buffer.clear while audio plays → cleared for that response, audio stops."""
    peer = BrowserPeer()
    try:
        answer = await client_for(server).realtime.calls.create(sdp=await peer.offer(),
                                                                session=SESSION)  # type: ignore[arg-type]
        await peer.accept(answer.text)
        await peer.until("session.created")
        peer.send({"type": "response.create"})
        started = (await peer.until("output_audio_buffer.started"))[-1]
        peer.send({"type": "output_audio_buffer.clear", "event_id": "evt_clear"})
        events = await peer.until("output_audio_buffer.cleared")
        assert events[-1]["response_id"] == started["response_id"]
        loud = peer.loud_frames
        peer.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        await peer.until("conversation.item.done")  # a round trip after the clear
        assert "output_audio_buffer.stopped" not in types(peer.seen)
        assert peer.loud_frames - loud < 15  # 1.8 s of audio was queued; the rest was dropped
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(server))


# --------------------------------------------------------------------------- faults


async def test_bad_sdp_gets_400_naming_the_problem(server: ServerHandle) -> None:
    """An offer that is not SDP → 400 invalid_sdp; nothing is left running."""
    with pytest.raises(openai.BadRequestError) as info:
        await client_for(server).realtime.calls.create(sdp="hello")
    error = info.value.response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_sdp", "sdp")
    assert "v=0" in error["message"]
    broken = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    with pytest.raises(openai.BadRequestError):
        await client_for(server).realtime.calls.create(sdp=broken)
    assert no_calls_left(server)


async def test_wrong_content_type_gets_415(server: ServerHandle) -> None:
    """A JSON or text body is not an offer: 415 with the allowed types."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.base_url}/realtime/calls", content=b"v=0",
            headers={"Authorization": "Bearer sk-test", "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/sdp" in response.json()["error"]["message"]


async def test_expired_or_wrong_key_gets_401(server: ServerHandle) -> None:
    """Calls need a valid key; an expired ephemeral key is refused."""
    past = EphemeralKeyStore(derive_secret(["sk-test"]) or b"", clock=lambda: time.time() - 3600)
    expired, _ = past.mint(SESSION, 60)
    peer = BrowserPeer()
    try:
        sdp = await peer.offer()
        for key in (expired, "sk-wrong"):
            with pytest.raises(openai.AuthenticationError):
                await client_for(server, key).realtime.calls.create(sdp=sdp)
    finally:
        await peer.close()
    assert no_calls_left(server)


async def test_sideband_to_unknown_call_is_refused(server: ServerHandle) -> None:
    """?call_id= for no live call → error call_not_found, then close."""
    async with client_for(server).realtime.connect(call_id="rtc_nope") as conn:
        event = await Events(conn).next()
        assert event["error"]["code"] == "call_not_found"


@pytest.mark.parametrize("how", ["closes", "goes silent"])
async def test_peer_that_vanishes_is_torn_down(server: ServerHandle, how: str) -> None:
    """A peer that closes, or stops sending media (no RTP for media_timeout_s), ends the call
    with no peer connection or session left behind."""
    peer = BrowserPeer()
    try:
        answer = await client_for(server).realtime.calls.create(sdp=await peer.offer())
        await peer.accept(answer.text)
        await peer.until("session.created")
        assert sessions(server) == 1
        if how == "closes":
            await peer.pc.close()
        else:
            peer.mic.vanished = True
        await wait_for(lambda: no_calls_left(server), within=15)
    finally:
        await peer.close()


async def test_playground_page_is_served_at_root(server: ServerHandle) -> None:
    """GET / serves the playground: static HTML that mints a key and opens a call."""
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{server.http_url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for needle in ("Connect", "/v1/realtime/client_secrets", "/v1/realtime/calls",
                   "oai-events", "Push to talk", "<meter"):
        assert needle in page.text, needle


async def test_sideband_opens_with_session_created_for_the_calls_session(
    server: ServerHandle,
) -> None:
    """A sideband's first event is session.created with the call's current session; the
    browser's data channel does not get a second one."""
    client = client_for(server)
    peer = BrowserPeer()
    try:
        raw = await client.realtime.calls.with_raw_response.create(sdp=await peer.offer(),
                                                                   session=SESSION)  # type: ignore[arg-type]
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        await peer.accept(raw.http_response.text)
        on_peer = (await peer.until("session.created"))[-1]
        async with client.realtime.connect(call_id=call_id) as sideband:
            first = await Events(sideband).next()
            assert first["type"] == "session.created"
            assert first["session"]["id"] == on_peer["session"]["id"]
            assert first["session"]["instructions"] == "Answer briefly."
            await sideband.session.update(session={"type": "realtime", "instructions": "Terse."})
            await peer.until("session.updated")
        assert types(peer.seen).count("session.created") == 1
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(server))

"""Bad input on the SIP side: codecs, decisions that never come, CANCEL, re-INVITE,
foreign RTP, webhook receivers that fail, are slow or are down, DTMF during speech."""

from __future__ import annotations

import asyncio
import socket
import struct

import httpx
import pytest

from rtgate.testing.audio import speech_pcm
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import running_server
from rtgate.testing.sip_peer import SipPeer, free_udp_port, offer_sdp

from .conftest import KEY, SECRET, Events, Receiver, Rig, delivery, running_receiver, sip_settings, wait_for

pytestmark = pytest.mark.asyncio


def sessions(rig: Rig) -> int:
    return int(httpx.get(f"{rig.server.http_url}/healthz").json()["sessions"])


async def refused(peer: SipPeer) -> str:
    assert peer.call_ is not None
    with pytest.raises(RuntimeError) as info:
        await peer.call_.wait_answered(10)
    return str(info.value)


@pytest.mark.parametrize("sdp", [
    offer_sdp("127.0.0.1", 40000, codecs="9 18 101"),          # G.722 and G.729 only
    offer_sdp("127.0.0.1", 40000, codecs="111"),               # Opus only
    offer_sdp("127.0.0.1", 40000, proto="RTP/SAVP"),           # SRTP
    offer_sdp("127.0.0.1", 0),                                  # audio stream refused
    offer_sdp("192.0.2.7", 40000),                             # media to a third party
])
async def test_unanswerable_offers_get_488_and_no_webhook(rig: Rig, receiver: Receiver, sdp: str) -> None:
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        attempts = receiver.attempts
        peer.invite(sdp)
        assert "488" in await refused(peer)
        assert receiver.attempts == attempts
    finally:
        await peer.close()


async def test_rejected_by_the_app(rig: Rig, receiver: Receiver) -> None:
    receiver.mode = "reject"
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        assert "486" in await refused(peer)
        assert not receiver.control_errors
    finally:
        await peer.close()


async def test_nobody_decides_declined_with_408_then_accept_is_404(rig: Rig, receiver: Receiver) -> None:
    receiver.mode = "ignore"
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        assert "408" in await refused(peer)  # sip_answer_timeout_s = 3
        client = rig.client()
        with pytest.raises(Exception) as info:
            await client.realtime.calls.accept(event.data.call_id, type="realtime")
        assert getattr(info.value, "status_code", None) == 404
        await client.close()
    finally:
        await peer.close()


async def test_failing_receiver_is_retried_with_the_same_webhook_id(rig: Rig, receiver: Receiver) -> None:
    receiver.fail = 2  # 503 twice, then verified and accepted
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        await peer.answered()
        assert receiver.attempts >= 3 and len(set(receiver.ids)) == 1 and receiver.ids[0] == event.id
        peer.hangup()
        await wait_for(lambda: sessions(rig) == 0)
    finally:
        await peer.close()


async def test_slow_receiver_still_accepts(rig: Rig, receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        await peer.answered()
        peer.hangup()
        await wait_for(lambda: sessions(rig) == 0)
    finally:
        await peer.close()


async def test_cancel_before_accept(rig: Rig, receiver: Receiver) -> None:
    receiver.mode = "ignore"
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        peer.cancel()
        assert (await peer.response("CANCEL")).status_code == 200
        assert (await peer.response("INVITE")).status_code == 487
        client = rig.client()
        for attempt in (client.realtime.calls.accept(event.data.call_id, type="realtime"),
                        client.realtime.calls.reject(event.data.call_id)):
            with pytest.raises(Exception) as info:
                await attempt
            assert getattr(info.value, "status_code", None) == 404
        await client.close()
    finally:
        await peer.close()


async def test_accept_twice_and_bad_bodies(rig: Rig, receiver: Receiver) -> None:
    receiver.mode = "ignore"
    peer = SipPeer(rig.sip)
    await peer.start()
    client = rig.client()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        call_id = event.data.call_id
        base = f"{rig.server.base_url}/realtime/calls/{call_id}"
        auth = {"Authorization": "Bearer sk-test"}
        async with httpx.AsyncClient() as http:
            bad = await http.post(f"{base}/accept", headers=auth, json={"type": "realtime", "model": "nope"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_model"
            bad = await http.post(f"{base}/accept", headers=auth, content=b"{")
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
            bad = await http.post(f"{base}/accept", headers=auth, json={"type": "bogus"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "session.type"
            bad = await http.post(f"{base}/reject", headers=auth, json={"status_code": 200})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "status_code"
            bad = await http.post(f"{base}/accept", json={"type": "realtime"})
            assert bad.status_code == 401
        await client.realtime.calls.accept(call_id, type="realtime")
        await peer.answered()
        with pytest.raises(Exception) as info:
            await client.realtime.calls.accept(call_id, type="realtime")
        assert getattr(info.value, "status_code", None) == 404
        async with httpx.AsyncClient() as http:
            bad = await http.post(f"{base}/refer", headers=auth, json={"target_uri": "http://x"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "target_uri"
            bad = await http.post(f"{base}/refer", headers=auth, json={})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "missing_required_parameter"
        await client.realtime.calls.hangup(call_id)
        await asyncio.wait_for(peer.bye.wait(), 5)
        with pytest.raises(Exception) as info:
            await client.realtime.calls.hangup(call_id)
        assert getattr(info.value, "status_code", None) == 404
    finally:
        await client.close()
        await peer.close()


async def test_reinvite_keeps_the_call(rig: Rig, receiver: Receiver) -> None:
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        await peer.answered()
        ok = await peer.response("INVITE", peer.reinvite())
        assert ok.status_code == 200 and ok.text.startswith("v=0")
        seq = peer.reinvite(offer_sdp("127.0.0.1", peer.rtp_port, codecs="9"))
        assert (await peer.response("INVITE", seq)).status_code == 488
        client = rig.client()
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            await events.next()
            peer.dtmf("7")  # the call still carries media both ways after the re-INVITEs
            assert (await events.until("input_audio_buffer.dtmf_event_received"))[-1]["event"] == "7"
        peer.hangup()
        await wait_for(lambda: sessions(rig) == 0)
        await client.close()
    finally:
        await peer.close()


def rtp_packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xDEADBEEF) + payload


async def test_rtp_from_an_unexpected_source_is_dropped(rig: Rig, receiver: Receiver,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from rtgate.audio import pcm16_to_ulaw, resample_pcm16

    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        await peer.answered()
        assert peer.call_ is not None and peer.call_.sdp_answer is not None
        target = peer.call_.sdp_answer.rtp_address
        assert target is not None
        speech = pcm16_to_ulaw(resample_pcm16(await speech_pcm("Let me in, I am not the caller."),
                                              24_000, 8_000))
        client = rig.client()
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            await events.next()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoof:
                spoof.bind(("127.0.0.2", 0))
                for seq, start in enumerate(range(0, len(speech), 160)):
                    spoof.sendto(rtp_packet(seq, speech[start:start + 160]), target)
            await wait_for(lambda: "RTP from unexpected source 127.0.0.2 dropped" in caplog.text)
            peer.dtmf("1")
            seen = await events.until("input_audio_buffer.dtmf_event_received")
            assert all(e["type"] != "input_audio_buffer.speech_started" for e in seen)
        peer.hangup()
        await wait_for(lambda: sessions(rig) == 0)
        await client.close()
    finally:
        await peer.close()


async def test_dtmf_during_speech(rig: Rig, receiver: Receiver) -> None:
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        await peer.answered()
        client = rig.client()
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            await events.next()
            talking = asyncio.create_task(peer.say(await speech_pcm("What time is it, please, right now?")))
            await events.until("input_audio_buffer.speech_started")
            peer.dtmf("#")
            seen = await events.until("response.done", within=30)
            digits = [e["event"] for e in seen if e["type"] == "input_audio_buffer.dtmf_event_received"]
            assert digits == ["#"]
            await talking
        peer.hangup()
        await wait_for(lambda: sessions(rig) == 0)
        await client.close()
    finally:
        await peer.close()


async def test_webhook_receiver_down_declines_with_480() -> None:
    dead = f"http://127.0.0.1:{free_udp_port()}/hook"  # nothing listens there
    with running_server(sip_settings(dead, sip_answer_timeout_s=2.0), vad_factory=FakeVAD) as handle:
        peer = SipPeer(("127.0.0.1", handle.settings.sip.port))
        await peer.start()
        try:
            peer.invite()
            assert "480" in await refused(peer)
        finally:
            await peer.close()


async def test_sources_outside_the_allow_list_get_no_answer() -> None:
    receiver = Receiver(SECRET, KEY)
    with running_receiver(receiver) as url, running_server(
            sip_settings(url, sip_allowed_sources=("192.0.2.0/24",)), vad_factory=FakeVAD) as handle:
        peer = SipPeer(("127.0.0.1", handle.settings.sip.port))
        await peer.start()
        try:
            peer.invite()
            assert peer.call_ is not None
            with pytest.raises(TimeoutError):
                await peer.call_.wait_answered(1.5)  # dropped unanswered: not even 100 Trying
            assert peer.responses.empty() and receiver.attempts == 0
        finally:
            await peer.close()


async def test_digest_auth_challenges_new_calls() -> None:
    """With digest credentials configured: no or wrong credentials get 401 (and no webhook);
    the trunk that answers the challenge gets through."""
    receiver = Receiver(SECRET, KEY)
    settings = sip_settings("http://127.0.0.1:9/hook", sip_digest_username="trunk",
                            sip_digest_password="s3cret-pass")
    with running_receiver(receiver) as url, running_server(
            settings.replace(webhook_urls=(url,)), vad_factory=FakeVAD) as handle:
        receiver.base_url = handle.base_url
        server = ("127.0.0.1", handle.settings.sip.port)
        for auth in (None, ("trunk", "wrong"), ("someone", "s3cret-pass")):
            peer = SipPeer(server)
            await peer.start()
            try:
                peer.invite(auth=auth)
                assert "401" in await refused(peer), auth
            finally:
                await peer.close()
        assert receiver.attempts == 0
        peer = SipPeer(server)
        await peer.start()
        try:
            peer.invite(auth=("trunk", "s3cret-pass"))
            event, headers = await delivery(receiver)
            await peer.answered()
            names = {h.name.lower() for h in event.data.sip_headers}
            assert "authorization" not in names and "s3cret" not in str(headers)
            peer.hangup()
        finally:
            await peer.close()

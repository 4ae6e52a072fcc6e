"""A phone calls rtgate over SIP on loopback: webhook, accept, speech both ways, DTMF,
sideband, refer and hangup — every sideband event validated strictly."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from rtgate.testing.audio import speech_pcm
from rtgate.testing.sip_peer import SipPeer

from .conftest import KEY, Events, Receiver, Rig, delivery, wait_for

pytestmark = pytest.mark.asyncio


def sessions(rig: Rig) -> int:
    return int(httpx.get(f"{rig.server.http_url}/healthz").json()["sessions"])


async def test_call_answered_spoken_to_dtmf_refer_and_hangup(rig: Rig, receiver: Receiver) -> None:
    receiver.session = {"instructions": "You answer the phone.",
                        "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                  "output": {"format": {"type": "audio/pcmu"}}}}
    peer = SipPeer(rig.sip)
    await peer.start()
    try:
        peer.invite(headers={"X-Customer": "42"})
        event, headers = await delivery(receiver)
        # The signature verified with the official SDK (client.webhooks.unwrap) in the receiver.
        assert event.type == "realtime.call.incoming"
        call_id = event.data.call_id
        assert call_id.startswith("rtc_") and len(call_id) == 36
        names = [h.name for h in event.data.sip_headers]
        assert {"Via", "From", "To", "Call-ID", "CSeq", "X-Customer"} <= set(names)
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)
        await peer.answered()
        assert peer.provisional == [180]
        assert not receiver.control_errors

        client = rig.client()
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            created = await events.next()
            assert created["type"] == "session.created"
            assert created["session"]["instructions"] == "You answer the phone."
            assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}

            spoken_at = await peer.say(await speech_pcm("What time is it?"))
            seen = await events.until("output_audio_buffer.stopped", within=30)
            types = [e["type"] for e in seen]
            for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed", "response.created",
                             "output_audio_buffer.started", "response.done"):
                assert expected in types, (expected, types)
            assert "response.output_audio.delta" not in types  # played over RTP instead
            done = next(e for e in seen if e["type"] == "response.done")
            assert done["response"]["status"] == "completed"
            assert "noon" in done["response"]["output"][0]["content"][0]["transcript"]
            # The answer came back as RTP audio the phone heard.
            first = peer.heard.first_sound_after(spoken_at)
            assert first is not None and peer.heard.loud_ms() >= 400

            peer.dtmf("5")
            dtmf = await events.until("input_audio_buffer.dtmf_event_received")
            assert dtmf[-1]["event"] == "5"
            assert abs(dtmf[-1]["received_at"] - time.time()) < 5

            await client.realtime.calls.refer(call_id, target_uri="sip:agent@example.com")
            assert await asyncio.wait_for(peer.refer_to.get(), 5) == "sip:agent@example.com"

            await client.realtime.calls.hangup(call_id)
            await asyncio.wait_for(peer.bye.wait(), 5)
        await wait_for(lambda: sessions(rig) == 0)
        await client.close()
    finally:
        await peer.close()


async def test_caller_hangs_up_mid_answer(rig: Rig, receiver: Receiver) -> None:
    """BYE while the answer is playing: the call and its session end, no BYE comes back."""
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
            await peer.say(await speech_pcm("What time is it?"))
            await events.until("output_audio_buffer.started")
            peer.hangup()
            await wait_for(lambda: sessions(rig) == 0)
        assert not peer.bye.is_set()
        await client.close()
    finally:
        await peer.close()


async def test_hangup_and_accept_of_unknown_calls(rig: Rig) -> None:
    client = rig.client()
    for call in (client.realtime.calls.accept("rtc_00000000aaaaaaaaaaaaaaaaaaaaaaaa", type="realtime"),
                 client.realtime.calls.reject("rtc_00000000aaaaaaaaaaaaaaaaaaaaaaaa"),
                 client.realtime.calls.refer("rtc_00000000aaaaaaaaaaaaaaaaaaaaaaaa", target_uri="sip:a@b")):
        with pytest.raises(Exception) as info:
            await call
        assert getattr(info.value, "status_code", None) == 404
        assert info.value.body["code"] == "call_not_found"  # type: ignore[attr-defined]
    await client.close()
    assert KEY


async def answered_with_sideband(rig: Rig, receiver: Receiver) -> tuple[SipPeer, str]:
    peer = SipPeer(rig.sip)
    await peer.start()
    peer.invite()
    event, _ = await delivery(receiver)
    await peer.answered()
    return peer, event.data.call_id


async def test_refer_that_succeeds_ends_the_call_with_bye(rig: Rig, receiver: Receiver) -> None:
    """The phone reports the transfer's progress in NOTIFYs; its 200 ends our leg."""
    peer, call_id = await answered_with_sideband(rig, receiver)
    client = rig.client()
    try:
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            await events.next()
            await client.realtime.calls.refer(call_id, target_uri="sip:+14155550123@pbx.example.com")
            assert await asyncio.wait_for(peer.refer_to.get(), 5) == "sip:+14155550123@pbx.example.com"
            peer.transfer_progress(180, "Ringing")  # progress only: the call goes on
            peer.dtmf("1")
            assert (await events.until("input_audio_buffer.dtmf_event_received"))[-1]["event"] == "1"
            assert not peer.bye.is_set()
            peer.transfer_progress(200, "OK")
            await asyncio.wait_for(peer.bye.wait(), 5)
            with pytest.raises(Exception):
                await events.next(within=5)  # the sideband closes with the call
        await wait_for(lambda: sessions(rig) == 0)
    finally:
        await client.close()
        await peer.close()


async def test_refer_that_fails_is_reported_and_the_call_goes_on(rig: Rig, receiver: Receiver) -> None:
    peer, call_id = await answered_with_sideband(rig, receiver)
    client = rig.client()
    try:
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            await events.next()
            # The target was busy: the phone's final NOTIFY says so.
            await client.realtime.calls.refer(call_id, target_uri="sip:agent@example.com")
            await asyncio.wait_for(peer.refer_to.get(), 5)
            peer.transfer_progress(486, "Busy Here")
            error = (await events.until("error"))[-1]["error"]
            assert (error["code"], error["param"]) == ("transfer_failed", "target_uri")
            assert "486 Busy Here" in error["message"] and "sip:agent@example.com" in error["message"]
            # A phone that cannot transfer at all refuses the REFER itself (501).
            peer.uas.on_refer = None
            await client.realtime.calls.refer(call_id, target_uri="sip:other@example.com")
            error = (await events.until("error"))[-1]["error"]
            assert error["code"] == "transfer_failed" and "501" in error["message"]
            # The call goes on.
            peer.dtmf("9")
            assert (await events.until("input_audio_buffer.dtmf_event_received"))[-1]["event"] == "9"
            assert not peer.bye.is_set()
            await client.realtime.calls.hangup(call_id)
            await asyncio.wait_for(peer.bye.wait(), 5)
        await wait_for(lambda: sessions(rig) == 0)
    finally:
        await client.close()
        await peer.close()

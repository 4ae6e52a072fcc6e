"""Barge-in on a SIP call, as on WebRTC: the server plays the answer over RTP, so a caller
who speaks over it cuts it off and the item is truncated to the audio the phone got."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtgate.testing.audio import speech_pcm
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD, Faults
from rtgate.testing.server import fake_profiles, running_server
from rtgate.testing.sip_peer import SipPeer

from .conftest import KEY, SECRET, Events, Rig, delivery, running_receiver, sip_settings
from .conftest import Receiver as _Receiver

pytestmark = pytest.mark.asyncio

ANSWER = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 6))


@pytest.fixture(scope="module")
def slow_rig() -> Iterator[Rig]:
    """A sentence takes 0.9 s to generate and 1.35 s to play: the response is still
    generating while its first sentences play."""
    receiver = _Receiver(SECRET, KEY)
    llm = FakeLLM(ANSWER, faults=Faults(slow_at=1, delay_s=0.1))
    with running_receiver(receiver) as url, running_server(
            sip_settings(url), profiles=fake_profiles(llm, FakeTTS(ms_per_word=150), FakeSTT("stop")),
            vad_factory=FakeVAD) as handle:
        receiver.base_url = handle.base_url
        yield Rig(handle, receiver)


async def answered_call(rig: Rig) -> tuple[SipPeer, str]:
    peer = SipPeer(rig.sip)
    await peer.start()
    peer.invite()
    event, _ = await delivery(rig.receiver)
    await peer.answered()
    return peer, event.data.call_id


async def test_caller_speaking_over_the_answer_truncates_it_to_what_the_phone_got(slow_rig: Rig) -> None:
    peer, call_id = await answered_call(slow_rig)
    client = slow_rig.client()
    try:
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            await events.next()
            await conn.response.create()
            started = (await events.until("output_audio_buffer.started"))[-1]
            await events.until("response.output_audio_transcript.delta")
            await peer.say(await speech_pcm("Stop, please stop."))
            seen = await events.until("conversation.item.truncated")
            heard_ms = peer.heard.loud_ms()
            types = [e["type"] for e in seen]
            assert types.index("input_audio_buffer.speech_started") < types.index(
                "output_audio_buffer.cleared") < types.index("response.done")
            done = next(e for e in seen if e["type"] == "response.done")["response"]
            assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
            assert done["id"] == started["response_id"]
            truncated = seen[-1]
            assert truncated["item_id"] == done["output"][0]["id"]
            assert 200 <= truncated["audio_end_ms"] < 5000, truncated
            # What the conversation keeps is what went out as RTP: the phone heard no more
            # sound than the truncation point (tones have quiet edges, so it may be less).
            assert 0 < heard_ms <= truncated["audio_end_ms"] + 40, (heard_ms, truncated)
            await conn.send({"type": "conversation.item.retrieve", "item_id": truncated["item_id"]})
            item = (await events.until("conversation.item.retrieved"))[-1]["item"]
            transcript = item["content"][0]["transcript"]
            assert ANSWER.startswith(transcript) and len(transcript) < len(ANSWER), transcript
            assert "output_audio_buffer.stopped" not in [e["type"] for e in events.seen]
            await client.realtime.calls.hangup(call_id)
    finally:
        await client.close()
        await peer.close()


async def test_clear_from_the_sideband_cuts_the_playing_answer(slow_rig: Rig) -> None:
    peer, call_id = await answered_call(slow_rig)
    client = slow_rig.client()
    try:
        await peer.say(b"", then_silence_ms=15000)  # the line stays open: silence, as a phone sends
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            await events.next()
            await conn.response.create()
            # After generation, while its audio still plays (as on WebRTC, a clear during
            # generation stops playback but leaves the response to finish).
            done = (await events.until("response.done"))[-1]["response"]
            assert "output_audio_buffer.stopped" not in [e["type"] for e in events.seen]
            await conn.send({"type": "output_audio_buffer.clear"})
            seen = await events.until("conversation.item.truncated")
            assert [e["type"] for e in seen][-2:] == ["output_audio_buffer.cleared",
                                                      "conversation.item.truncated"]
            assert seen[-2]["response_id"] == done["id"]
            assert 0 < seen[-1]["audio_end_ms"] < 6750  # 45 words × 150 ms queued
            await client.realtime.calls.hangup(call_id)
    finally:
        await client.close()
        await peer.close()

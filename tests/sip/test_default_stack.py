"""A phone call answered by the embedded default stack: Silero VAD, Whisper, SmolLM2 and
espeak-ng, over SIP and RTP on loopback, accepted by a webhook receiver with the SDK."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator

import pytest

from rtgate.server.app import build_profiles
from rtgate.testing.audio import speech_pcm
from rtgate.testing.server import running_server
from rtgate.testing.sip_peer import SipPeer

from .conftest import KEY, SECRET, Events, Receiver, Rig, delivery, running_receiver, sip_settings

pytestmark = [pytest.mark.e2e, pytest.mark.models, pytest.mark.asyncio]

QUESTIONS = ("What is the capital of France?", "Can you tell me a short joke?",
             "What day comes after Monday?")


@pytest.fixture(scope="module")
def default_rig() -> Iterator[Rig]:
    receiver = Receiver(SECRET, KEY, session={
        "max_output_tokens": 40,
        "audio": {"input": {"transcription": {"model": "whisper-1"},
                            "format": {"type": "audio/pcmu"}},
                  "output": {"format": {"type": "audio/pcmu"}}},
    })
    with running_receiver(receiver) as url, running_server(
            sip_settings(url, pipeline="default", overload_late_s=0, sip_media_timeout_s=20.0),
            profiles=build_profiles) as handle:
        receiver.base_url = handle.base_url
        yield Rig(handle, receiver)


async def test_phone_question_gets_a_spoken_answer_over_rtp(default_rig: Rig) -> None:
    latencies: list[float] = []
    peer = SipPeer(default_rig.sip)
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(default_rig.receiver)
        await peer.answered()
        client = default_rig.client()
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            await events.next()
            for question in QUESTIONS:
                spoken_end = await peer.say(await speech_pcm(question), then_silence_ms=6000)
                seen = await events.until("output_audio_buffer.stopped", within=40)
                types = [e["type"] for e in seen]
                assert "input_audio_buffer.speech_started" in types
                assert "output_audio_buffer.started" in types
                done = next(e for e in seen if e["type"] == "response.done")
                assert done["response"]["status"] in ("completed", "incomplete")
                assert len(done["response"]["output"][0]["content"][0]["transcript"].split()) >= 2
                latencies.append(await peer.first_sound(spoken_end, 10) - spoken_end)
            while not any(e["type"] == "conversation.item.input_audio_transcription.completed"
                          for e in events.seen):
                await events.next()
            heard = next(e for e in events.seen
                         if e["type"] == "conversation.item.input_audio_transcription.completed")
            assert "capital" in heard["transcript"].lower()
            await client.realtime.calls.hangup(event.data.call_id)
            await asyncio.wait_for(peer.bye.wait(), 5)
        await client.close()
    finally:
        await peer.close()
    print(f"\nSIP end of caller speech -> first answer RTP packet: "
          f"{', '.join(f'{x * 1000:.0f}' for x in latencies)} ms, "
          f"median {statistics.median(latencies) * 1000:.0f} ms")

"""Transcription while the user speaks (SPEC §10.4), through the SDK with the real Silero VAD
and a fake STT whose transcript names the length of the audio it was given."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from rtgate.server.settings import Settings
from rtgate.testing.audio import chunks, silence_pcm, speech_pcm
from rtgate.testing.fakes import FakeLLM, FakeSTT
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import Events, client_for, types

pytestmark = pytest.mark.e2e

STT = FakeSTT()
LLM = FakeLLM()
LIVE_STT = FakeSTT("hello there general kenobi")


@pytest.fixture(scope="module")
def stt_server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=("sk-test",)), profiles=fake_profiles(LLM, stt=STT)) as h:
        yield h


@pytest.fixture(scope="module")
def live_server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=("sk-test",)), profiles=fake_profiles(stt=LIVE_STT)) as h:
        yield h


async def test_turn_mode_reuses_the_pass_made_while_speaking(stt_server: ServerHandle) -> None:
    """The committed turn's transcript is the background pass (no second STT call); the
    deltas follow the commit; the LLM gets the same transcript."""
    speech = await speech_pcm("Hello there, how are you?")
    async with client_for(stt_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"transcription": {"model": "whisper-1"}}},
        })
        await ev.expect("session.updated")
        calls_before = STT.calls
        for chunk in chunks(silence_pcm(1000) + speech + silence_pcm(400), 20):
            await conn.input_audio_buffer.append(audio=chunk)
            await asyncio.sleep(0.02)  # real time: the VAD and the passes see speech as it comes
        await ev.until("response.done")
        while "conversation.item.input_audio_transcription.completed" not in types(ev.seen):
            await ev.next()
    seen = types(ev.seen)
    assert seen.index("conversation.item.added") < seen.index(
        "conversation.item.input_audio_transcription.delta"
    )
    completed = next(e for e in ev.seen if e["type"].endswith("transcription.completed"))
    committed_s = 1.0 + len(speech) / 48_000 + 0.2
    heard_s = float(re.match(r"([\d.]+) seconds", completed["transcript"]).group(1))  # type: ignore[union-attr]
    assert heard_s < committed_s - 0.5  # the pass began at speech start, not the buffer start
    answer = "".join(e["delta"] for e in ev.seen if e["type"] == "response.output_text.delta")
    assert completed["transcript"] in answer  # the LLM saw the same transcript
    passes = STT.calls - calls_before
    assert 1 <= passes <= 2 + 2 * len(speech) / 48_000  # one pass per 0.5 s of speech, + pause
    # Partial passes while speaking, then one final-quality pass (the one reused) that
    # carries the latest partial text as its reference.
    options = STT.options[calls_before:]
    assert not options[-1].partial
    assert all(o.partial for o in options[:-1])
    if len(options) > 1:
        assert options[-1].reference is not None
    # Each pass handed the LLM the prompt the response would have, before the commit;
    # the last one is the prompt the response then used.
    prefills = LLM.prefills[-len(options):]
    assert len(prefills) == len(options)
    assert prefills[-1].messages == LLM.requests[-1].messages
    assert prefills[-1].messages[-1] == {"role": "user", "content": completed["transcript"]}


async def test_prefill_of_a_later_turn_is_the_prompt_the_response_uses(stt_server: ServerHandle) -> None:
    """Second spoken turn, input transcription off: the last prefill before the commit
    carries the first turn's transcript too, exactly as the response's request does."""
    speech = await speech_pcm("Hello there, how are you?")
    async with client_for(stt_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.expect("session.updated")
        for _turn in range(2):
            prefills_before = len(LLM.prefills)
            for chunk in chunks(silence_pcm(600) + speech + silence_pcm(400), 20):
                await conn.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(0.02)  # real time: the VAD and the passes see speech as it comes
            await ev.until("response.done")
    assert len(LLM.prefills) > prefills_before
    request = LLM.requests[-1].messages
    assert [m["role"] for m in request if m["role"] != "system"] == ["user", "assistant", "user"]
    assert all(m["content"] for m in request)
    assert LLM.prefills[-1].messages == request


async def test_live_mode_streams_deltas_before_the_commit(live_server: ServerHandle) -> None:
    """Live model, turn_detection null: deltas under the next item id, then commit, completed."""
    async with client_for(live_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"},
                                "turn_detection": None}},
        })
        await ev.expect("session.updated")
        for _ in range(3):
            for chunk in chunks(silence_pcm(1100), 100):
                await conn.input_audio_buffer.append(audio=chunk)
            await asyncio.sleep(0.3)
        first = await ev.expect("conversation.item.input_audio_transcription.delta")
        await conn.input_audio_buffer.commit()
        events = await ev.until("conversation.item.input_audio_transcription.completed")
    seen = types(events)
    assert seen[:3] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    assert events[0]["item_id"] == first["item_id"] == events[-1]["item_id"]
    deltas = [first["delta"]] + [e["delta"] for e in events if e["type"].endswith("transcription.delta")]
    assert "".join(deltas) == events[-1]["transcript"] == "hello there general kenobi"


async def test_an_ended_session_hands_its_conversation_back_to_the_llm(stt_server: ServerHandle) -> None:
    """The key its prefills and response carried is forgotten when it closes, so an
    engine's prompt cache slot for it can go to the next new conversation at once."""
    speech = await speech_pcm("Hello there, how are you?")
    LLM.forgot.clear()
    async with client_for(stt_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.expect("session.updated")
        for chunk in chunks(silence_pcm(600) + speech + silence_pcm(400), 20):
            await conn.input_audio_buffer.append(audio=chunk)
            await asyncio.sleep(0.02)  # real time: the VAD and the passes see speech as it comes
        await ev.until("response.done")
        key = LLM.requests[-1].conversation
        assert key is not None and key not in LLM.forgotten
    assert await asyncio.to_thread(LLM.forgot.wait, 10)
    assert LLM.forgotten[-1] == key
    assert LLM.prefills[-1].conversation == key

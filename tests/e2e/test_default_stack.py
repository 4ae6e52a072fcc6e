"""The embedded default stack end to end: real VAD, Whisper, SmolLM2 and espeak-ng."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtgate.server.app import build_profiles
from rtgate.server.settings import Settings
from rtgate.testing.audio import chunks, silence_pcm, speech_pcm
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, client_for, types

pytestmark = [pytest.mark.e2e, pytest.mark.models]


@pytest.fixture(scope="module")
def default_stack() -> Iterator[ServerHandle]:
    with running_server(Settings(pipeline="default"), profiles=build_profiles) as handle:
        yield handle


async def test_spoken_question_gets_a_spoken_answer(default_stack: ServerHandle) -> None:
    """A question spoken in real-sized chunks gets transcribed and answered with audio."""
    question = await speech_pcm("What is the capital of France?")
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime", "max_output_tokens": 40,
            "audio": {"input": {"transcription": {"model": "whisper-1"}}},
        })
        await ev.expect("session.updated")
        for chunk in chunks(silence_pcm(300) + question + silence_pcm(700), 20):
            await conn.input_audio_buffer.append(audio=chunk)
        events = await ev.until("response.done")
        while not any(e["type"] == "conversation.item.input_audio_transcription.completed" for e in ev.seen):
            await ev.next()
        seen = types(ev.seen)
        assert "input_audio_buffer.speech_started" in seen
        assert "response.output_audio.delta" in seen
        completed = next(e for e in ev.seen
                         if e["type"] == "conversation.item.input_audio_transcription.completed")
        heard = completed["transcript"].lower()
        assert "capital" in heard and "france" in heard
        response = events[-1]["response"]
        assert response["status"] in ("completed", "incomplete")
        transcript = response["output"][0]["content"][0]["transcript"]
        assert len(transcript.split()) >= 2


async def test_transcription_session_with_whisper(default_stack: ServerHandle) -> None:
    speech = await speech_pcm("The quick brown fox jumps over the lazy dog.")
    client = client_for(default_stack)
    async with client.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        for chunk in chunks(silence_pcm(300) + speech + silence_pcm(700), 100):
            await conn.input_audio_buffer.append(audio=chunk)
        events = await ev.until("conversation.item.input_audio_transcription.completed")
        text = events[-1]["transcript"].lower()
        assert "quick brown fox" in text
        assert not any(t.startswith("response.") for t in types(events))

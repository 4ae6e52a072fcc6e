"""Audio flows (SPEC §10.2–§10.5) with the official SDK, real Silero VAD and fake backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rtgate.pipeline.base import Deadlines
from rtgate.server.settings import Settings
from rtgate.testing.audio import chunks, noise_pcm, silence_pcm, speech_pcm
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, Faults
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import Events, assert_error, client_for, types

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def audio_server() -> Iterator[ServerHandle]:
    profiles = fake_profiles(
        llm=FakeLLM(tool_calls=[("get_weather", '{"city": "Paris"}')]),
        tts=FakeTTS(),
        stt=FakeSTT("what is the weather in paris"),
    )
    with running_server(Settings(api_keys=("sk-test",)), profiles=profiles) as handle:
        yield handle


async def _send_audio(conn, pcm: bytes) -> None:  # type: ignore[no-untyped-def]
    for chunk in chunks(pcm, 100):
        await conn.input_audio_buffer.append(audio=chunk)


async def test_audio_in_with_server_vad_audio_out(audio_server: ServerHandle) -> None:
    """SPEC §10.2: speech → speech_started/stopped → commit → audio + transcript response."""
    speech = await speech_pcm("Hello there, what is the weather like today?")
    async with client_for(audio_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        created = await ev.expect("session.created")
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        await _send_audio(conn, noise_pcm(500) + speech + silence_pcm(800))
        started = await ev.expect("input_audio_buffer.speech_started")
        assert 200 <= started["audio_start_ms"] <= 800
        stopped = await ev.expect("input_audio_buffer.speech_stopped")
        assert stopped["item_id"] == started["item_id"]
        assert stopped["audio_end_ms"] > started["audio_start_ms"] + 1000
        committed = await ev.expect("input_audio_buffer.committed")
        assert committed["item_id"] == started["item_id"]
        added = await ev.expect("conversation.item.added")
        assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
        await ev.expect("conversation.item.done")
        events = await ev.until("rate_limits.updated")
        seen = types(events)
        assert seen[:4] == ["response.created", "response.output_item.added",
                            "conversation.item.added", "response.content_part.added"]
        assert "response.output_audio.delta" in seen
        assert "response.output_audio_transcript.delta" in seen
        tail = [t for t in seen if not t.endswith(".delta")][4:]
        assert tail == ["response.output_audio.done", "response.output_audio_transcript.done",
                        "response.content_part.done", "conversation.item.done",
                        "response.output_item.done", "response.done", "rate_limits.updated"]
        done = events[-2]["response"]
        assert done["status"] == "completed"
        transcript = done["output"][0]["content"][0]["transcript"]
        # The fake STT transcribed the user's audio; the fake LLM echoed it.
        assert transcript == "You said: what is the weather in paris"


async def test_function_call_round_trip(audio_server: ServerHandle) -> None:
    """SPEC §10.3: function_call item with streamed arguments, then the tool output answer."""
    async with client_for(audio_server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        })
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Weather in Paris?"}]})
        await conn.response.create()
        events = await ev.until("rate_limits.updated")
        args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert args_done["name"] == "get_weather"
        assert args_done["arguments"] == '{"city": "Paris"}'
        item = next(e for e in events if e["type"] == "response.output_item.added")["item"]
        assert item["type"] == "function_call"
        await conn.conversation.item.create(item={"type": "function_call_output",
                                                  "call_id": args_done["call_id"], "output": "22C sunny"})
        await ev.expect("conversation.item.added")
        await ev.expect("conversation.item.done")
        await conn.response.create()
        events = await ev.until("response.done")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "You said: Weather in Paris?" \
            or "22C sunny" in events[-1]["response"]["output"][0]["content"][0]["text"]


async def test_transcription_session(audio_server: ServerHandle) -> None:
    """SPEC §10.4: ?intent=transcription; deltas only after the commit; no responses."""
    speech = await speech_pcm("Please transcribe this sentence.")
    client = client_for(audio_server)
    async with client.realtime.connect(extra_query={"intent": "transcription"}, model="gpt-realtime") as conn:
        ev = Events(conn)
        created = await ev.expect("session.created")
        assert created["session"]["type"] == "transcription"
        await conn.session.update(session={"type": "transcription", "audio": {"input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": {"type": "server_vad"}}}})
        updated = await ev.expect("session.updated")
        assert updated["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
        await _send_audio(conn, silence_pcm(300) + speech + silence_pcm(800))
        events = await ev.until("conversation.item.input_audio_transcription.completed")
        seen = types(events)
        assert seen.index("input_audio_buffer.committed") < seen.index(
            "conversation.item.input_audio_transcription.delta")
        assert events[-1]["transcript"] == "what is the weather in paris"
        assert events[-1]["usage"]["type"] == "duration"
        assert not any(t.startswith("response.") for t in seen)


@pytest.fixture(scope="module")
def slow_speaker() -> Iterator[ServerHandle]:
    """A server whose TTS speaks in real time-ish (20 ms per word), so answers take seconds."""
    tts = FakeTTS(faults=Faults(slow_at=0, delay_s=0.02))
    with running_server(Settings(), profiles=fake_profiles(tts=tts)) as handle:
        yield handle


async def test_barge_in_cancels_the_response(slow_speaker: ServerHandle) -> None:
    """SPEC §10.5: speech during a response cancels it with reason turn_detected."""
    speech = await speech_pcm("Stop, wait a moment please.")
    async with client_for(slow_speaker).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": " ".join(["word"] * 400)}]})
        await conn.response.create()
        await ev.until("response.output_audio.delta")
        await _send_audio(conn, speech + silence_pcm(800))
        events = await ev.until("response.done")
        assert "input_audio_buffer.speech_started" in types(events)
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        assert done["output"][0]["status"] == "incomplete"
        # Truncate to what was "played": the item keeps working.
        item_id = done["output"][0]["id"]
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=40)
        truncated = [e for e in await ev.until_any("conversation.item.truncated", "error")]
        assert truncated[-1]["type"] == "conversation.item.truncated", truncated[-1]
        assert truncated[-1]["audio_end_ms"] == 40
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=10_000_000,
                                              event_id="too_long")
        err = await ev.until_any("error", "conversation.item.truncated")
        assert_error(err[-1], "invalid_value", event_id="too_long", param="audio_end_ms")


@pytest.mark.parametrize("faults,code", [(Faults(raise_at=2), "backend_error"),
                                         (Faults(hang_at=2), "backend_timeout")])
async def test_backend_fault_fails_the_response_not_the_session(faults: Faults, code: str) -> None:
    llm = FakeLLM("one two three four five", faults=faults,
                  deadlines=Deadlines(first_chunk_s=5, next_chunk_s=0.5, total_s=10))
    with running_server(Settings(), profiles=fake_profiles(llm=llm)) as handle:
        async with client_for(handle).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await ev.expect("session.updated")
            await conn.response.create()
            events = await ev.until("response.done")
            response = events[-1]["response"]
            assert response["status"] == "failed"
            assert response["status_details"]["error"]["code"] == code
            assert response["output"][0]["content"][0]["text"] == "one two"  # kept what streamed
            await conn.session.update(session={"type": "realtime", "instructions": "still works"})
            await ev.until("session.updated")


async def test_session_expires_with_session_expired_then_close() -> None:
    with running_server(Settings(session_lifetime_s=1.0)) as handle:
        async with client_for(handle).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            created = await ev.expect("session.created")
            assert created["session"]["expires_at"] >= 1
            err = await ev.until("error")
            assert_error(err[-1], "session_expired")
            with pytest.raises(Exception):
                await ev.next()


async def test_oversize_frame_closes_1009() -> None:
    with running_server(Settings(max_frame_bytes=64 * 1024)) as handle:
        async with client_for(handle).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            await conn._connection.send('{"type":"input_audio_buffer.append","audio":"' + "A" * 100_000 + '"}')
            with pytest.raises(Exception):
                await asyncio.wait_for(ev.next(), 10)
            assert conn._connection.close_code == 1009

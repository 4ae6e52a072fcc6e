"""The embedded default stack end to end: real VAD, Whisper, SmolLM2 and espeak-ng."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest

from rtgate.server.app import build_profiles
from rtgate.server.settings import Settings
from rtgate.testing.audio import chunks, silence_pcm, speech_pcm
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, client_for, types

pytestmark = [pytest.mark.e2e, pytest.mark.models]


@pytest.fixture(scope="module")
def default_stack() -> Iterator[ServerHandle]:
    # The overload refusal is off: these tests are about answers, and a CI machine busy
    # with other work can leave the models a second late (admission: test_capacity.py).
    with running_server(Settings(pipeline="default", overload_late_s=0), profiles=build_profiles) as handle:
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


async def test_barge_in_cancels_the_answer_and_truncation_trims_it(default_stack: ServerHandle) -> None:
    """SPEC §10.5: speech during the answer cancels it (turn_detected); a truncate from the
    client trims the assistant transcript to the audio it played."""
    interruption = await speech_pcm("Stop, please.")
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 200})
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Tell me a long story about a dragon."}],
        })
        await conn.response.create()
        added = await ev.until("response.output_audio.delta")
        item_id = added[-1]["item_id"]
        for chunk in chunks(silence_pcm(200) + interruption + silence_pcm(600), 100):
            await conn.input_audio_buffer.append(audio=chunk)
        done = (await ev.until("response.done"))[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        spoken = done["output"][0]["content"][0]["transcript"]
        assert spoken
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        await ev.until("conversation.item.truncated")
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = (await ev.until("conversation.item.retrieved"))[-1]["item"]
        assert retrieved["content"][0]["transcript"] == ""


async def test_tool_call_round_trip_with_the_real_llm(default_stack: ServerHandle) -> None:
    """SPEC §10.3: a function_call with valid JSON arguments, then an answer using its output."""
    import json

    weather = {
        "type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"], "tools": [weather],
            "tool_choice": "auto", "max_output_tokens": 60,
        })
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Paris?"}],
        })
        await conn.response.create()
        first = (await ev.until("response.done"))[-1]["response"]
        call = next(o for o in first["output"] if o["type"] == "function_call")
        assert call["name"] == "get_weather"
        assert isinstance(json.loads(call["arguments"]).get("city"), str)
        await conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call["call_id"],
            "output": json.dumps({"temperature_c": 21, "sky": "sunny"}),
        })
        await conn.response.create()
        answer = (await ev.until("response.done"))[-1]["response"]
        assert answer["status"] in ("completed", "incomplete")
        message = next(o for o in answer["output"] if o["type"] == "message")
        assert message["content"][0]["text"].strip()


async def test_four_spoken_conversations_at_once_are_all_answered(default_stack: ServerHandle) -> None:
    """Four callers speak at the same time; every one gets a spoken answer (issue 11: the
    scheduler orders the four first answers, none waits for another's whole answer)."""
    questions = [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "What color is the sky?",
        "Name a large animal.",
    ]

    async def converse(question: str) -> dict[str, Any]:
        speech = await speech_pcm(question)
        async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            await conn.session.update(session={"type": "realtime", "max_output_tokens": 60})
            await ev.expect("session.updated")
            for chunk in chunks(silence_pcm(300) + speech + silence_pcm(700), 20):
                await conn.input_audio_buffer.append(audio=chunk)
            events = await ev.until("response.done")
            assert "response.output_audio.delta" in types(events), types(events)
            return events[-1]["response"]

    answers = await asyncio.gather(*(converse(q) for q in questions))
    assert all(a["status"] in ("completed", "incomplete") for a in answers), answers


async def test_out_of_band_one_word_reply_completes_without_running_to_the_cap(
    default_stack: ServerHandle,
) -> None:
    """Issue 19: "Reply with exactly one word" out of band ends completed, one word, every time."""
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        for _ in range(3):
            await conn.response.create(response={
                "conversation": "none", "input": [], "output_modalities": ["text"],
                "instructions": "Reply with exactly one word: done.",
            })
            done = (await ev.until("response.done"))[-1]["response"]
            assert done["status"] == "completed", done.get("status_details")
            text = done["output"][0]["content"][0]["text"]
            assert len(text.split()) == 1, text


async def test_spoken_one_sentence_answer_is_one_short_sentence(default_stack: ServerHandle) -> None:
    """Issue 19: "Answer in one short sentence." gives one sentence of at most 8 s of audio."""
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={"type": "realtime", "instructions": "Answer in one short sentence."})
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather like in Paris today?"}],
        })
        await conn.response.create()
        events = await ev.until("response.done")
        audio_s = sum(len(base64.b64decode(e["delta"])) for e in events
                      if e["type"] == "response.output_audio.delta") / 48000
        done = events[-1]["response"]
        transcript = done["output"][0]["content"][0]["transcript"].strip()
        assert done["status"] == "completed"
        assert 0 < audio_s <= 8.0, (audio_s, transcript)
        assert not re.search(r"[.!?]\s+\w", transcript), transcript


async def test_forced_mcp_call_with_the_real_llm(default_stack: ServerHandle) -> None:
    """A real MCP server on loopback: SmolLM2 fills add(a, b) under the tool's JSON schema,
    rtgate calls it, and the model answers from the result in the same response."""
    import json

    from rtgate.testing.mcp_server import running_mcp_servers

    with running_mcp_servers() as mcp:
        async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.plain, "require_approval": "never",
                    "allowed_tools": ["add"]}
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["text"], "tools": [tool], "max_output_tokens": 60,
                "tool_choice": {"type": "mcp", "server_label": "calc", "name": "add"}})
            await ev.until("mcp_list_tools.completed")
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is 2 plus 3?"}]})
            await conn.response.create()
            events = await ev.until("response.done")
        assert "response.mcp_call_arguments.delta" in types(events)
        output = events[-1]["response"]["output"]
        call = output[0]
        assert call["type"] == "mcp_call" and call["name"] == "add"
        arguments = json.loads(call["arguments"])
        assert isinstance(arguments["a"], int) and isinstance(arguments["b"], int)
        assert call["output"] == str(arguments["a"] + arguments["b"])
        assert mcp.calls == ["add"]
        assert output[-1]["type"] == "message" and output[-1]["content"][0]["text"].strip()


async def test_embedded_model_refuses_images(default_stack: ServerHandle) -> None:
    """SmolLM2 cannot see: an image is refused with image_input_not_supported, not answered."""
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    async with client_for(default_stack).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Describe this picture."}, {"type": "input_image", "image_url": png}]})
        error = await ev.expect("error")
        assert error["error"]["code"] == "image_input_not_supported"

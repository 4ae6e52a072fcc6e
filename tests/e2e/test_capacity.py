"""Capacity (issue 11) end to end with the official SDK: admission control refuses a
session past ``max_conversations`` with a spec-shaped error while running sessions keep
going, and one caller's stalled network backend leaves the others answered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from engines.upstream import API_KEY, running_upstream
from rtgate.pipeline.engines.openai_compat import OpenAIChatLLM, OpenAIEndpoint
from rtgate.pipeline.responder import Pipeline
from rtgate.server.settings import Settings
from rtgate.testing.audio import chunks, silence_pcm
from rtgate.testing.fakes import FakeLLM, FakeTTS
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, assert_error, client_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def one_conversation() -> Iterator[ServerHandle]:
    """Room for one conversation; the fake stack counts as a local model stack here."""

    def profiles(_settings: Settings) -> dict[str, Pipeline]:
        return {"default": Pipeline("fake", FakeLLM("Hello there."), FakeTTS(), admission_limited=True)}

    # Only the count refuses here: the process's scheduler also ran the real models of
    # other test modules, whose lateness would refuse sessions as "overloaded".
    settings = Settings(api_keys=("sk-test",), max_conversations=1, overload_late_s=0)
    with running_server(settings, profiles=profiles) as handle:
        yield handle


async def ask(ev: Events, conn: object, text: str) -> list[dict[str, object]]:
    await conn.conversation.item.create(item={  # type: ignore[attr-defined]
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await conn.response.create()  # type: ignore[attr-defined]
    return await ev.until("response.done")


async def test_a_session_past_capacity_is_refused_and_the_running_one_keeps_going(
    one_conversation: ServerHandle,
) -> None:
    client = client_for(one_conversation)
    async with client.realtime.connect(model="gpt-realtime") as running:
        ev = Events(running)
        await ev.expect("session.created")
        done = (await ask(ev, running, "Hello?"))[-1]  # a conversation now
        assert done["response"]["status"] == "completed"  # type: ignore[index]
        async with client.realtime.connect(model="gpt-realtime") as refused:
            refusal = Events(refused)
            error = await refusal.next()
            assert_error(error, "server_busy")
            assert error["error"]["type"] == "server_error"
            assert "1 conversations" in error["error"]["message"]
            with pytest.raises(Exception):
                await refusal.next()
        done = (await ask(ev, running, "Are you still there?"))[-1]
        assert done["response"]["status"] == "completed"  # type: ignore[index]
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{one_conversation.http_url}/metrics",
                               headers={"Authorization": "Bearer sk-test"})).text
    assert 'rtgate_sessions_refused_total{reason="capacity"} 1' in text
    for stage in ("transcript", "first_text", "first_audio"):  # both answers were timed
        count = re.search(rf'rtgate_response_stage_seconds_count{{profile="default",stage="{stage}"}} (\d+)', text)
        assert count is not None and int(count.group(1)) >= 2, (stage, text)


async def test_a_session_that_only_listens_leaves_room_for_a_conversation(
    one_conversation: ServerHandle,
) -> None:
    client = client_for(one_conversation)
    async with client.realtime.connect(model="gpt-realtime") as listener:
        ev = Events(listener)
        await ev.expect("session.created")
        await listener.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "create_response": False}}}})
        await ev.expect("session.updated")
        for chunk in chunks(silence_pcm(200)):  # it has started: listening, not answering
            await listener.input_audio_buffer.append(audio=chunk)
        async with client.realtime.connect(model="gpt-realtime") as talker:
            talk = Events(talker)
            await talk.expect("session.created")
            done = (await ask(talk, talker, "Hello?"))[-1]
            assert done["response"]["status"] == "completed"  # type: ignore[index]


@pytest.fixture(scope="module")
def shared_network_llm() -> Iterator[ServerHandle]:
    """One OpenAI-compatible LLM backend (two requests in flight) behind every session."""
    with running_upstream() as upstream:
        endpoint = OpenAIEndpoint(base_url=upstream.base_url, model="chat", api_key=API_KEY,
                                  max_in_flight=2)
        llm = OpenAIChatLLM(endpoint)

        def profiles(_settings: Settings) -> dict[str, Pipeline]:
            return {"default": Pipeline("network", llm, FakeTTS())}

        with running_server(Settings(api_keys=("sk-test",)), profiles=profiles) as handle:
            yield handle


async def test_a_stalled_backend_request_leaves_the_other_callers_answered(
    shared_network_llm: ServerHandle,
) -> None:
    """One caller's request stalls mid-answer and holds one of the backend's two runs;
    three other callers are still answered, in turn, through the other run."""
    client = client_for(shared_network_llm)
    async with client.realtime.connect(model="gpt-realtime") as stalled:
        stuck = Events(stalled)
        await stuck.expect("session.created")
        await stalled.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "[stall] hi"}]})
        await stalled.response.create()
        await stuck.until("response.created")  # its backend sends one word, then nothing

        async def caller(n: int) -> dict[str, object]:
            async with client.realtime.connect(model="gpt-realtime") as conn:
                ev = Events(conn)
                await ev.expect("session.created")
                events = await ask(ev, conn, f"Question {n}?")
                assert any(e["type"] == "response.output_audio.delta" for e in events)
                return events[-1]

        answers = await asyncio.gather(*(caller(n) for n in range(3)))
        assert all(a["response"]["status"] == "completed" for a in answers)  # type: ignore[index]
        await stalled.response.cancel()
        cancelled = await stuck.until("response.done")
        assert cancelled[-1]["response"]["status"] == "cancelled"

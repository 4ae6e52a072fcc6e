"""Barge-in on a call: the server owns playback, so it truncates the assistant item to the
audio actually played (SPEC §10.5 step 2), with no ``conversation.item.truncate`` from the
client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD, Faults
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import client_for, no_calls_left, require_ice_host, wait_for
from .peer import BrowserPeer

pytestmark = pytest.mark.e2e

ANSWER = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 6))
SESSION = {"type": "realtime", "model": "gpt-realtime"}


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerHandle]:
    """A sentence takes 0.9 s to generate and 1.35 s to play: the response is still
    generating while its first sentences play."""
    require_ice_host()
    settings = Settings(api_keys=("sk-test",), webrtc_media_timeout_s=5.0)
    llm = FakeLLM(ANSWER, faults=Faults(slow_at=1, delay_s=0.1))
    with running_server(settings, profiles=fake_profiles(llm, FakeTTS(ms_per_word=150), FakeSTT("stop")),
                        vad_factory=FakeVAD) as handle:
        yield handle


async def open_call(handle: ServerHandle) -> BrowserPeer:
    peer = BrowserPeer()
    answer = await client_for(handle).realtime.calls.create(sdp=await peer.offer(),
                                                            session=SESSION)  # type: ignore[arg-type]
    await peer.accept(answer.text)
    await peer.until("session.created")
    return peer


async def retrieved(peer: BrowserPeer, item_id: str) -> dict[str, Any]:
    peer.send({"type": "conversation.item.retrieve", "item_id": item_id})
    return (await peer.until("conversation.item.retrieved"))[-1]["item"]  # type: ignore[no-any-return]


async def test_barge_in_while_generating_truncates_the_item_to_the_audio_played(
    slow_server: ServerHandle,
) -> None:
    """Speech during a generating response: cleared, response.done cancelled, then
    conversation.item.truncated at the played time; the unheard transcript is gone."""
    peer = await open_call(slow_server)
    try:
        peer.send({"type": "response.create"})
        started = (await peer.until("output_audio_buffer.started"))[-1]
        await peer.until("response.output_audio_transcript.delta")
        peer.mic.speak(0.6)
        events = await peer.until("conversation.item.truncated")
        seen = [e["type"] for e in events]
        assert seen.index("input_audio_buffer.speech_started") < seen.index(
            "output_audio_buffer.cleared") < seen.index("response.done")
        done = next(e for e in events if e["type"] == "response.done")["response"]
        assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
        assert done["id"] == started["response_id"]
        truncated = events[-1]
        item_id = done["output"][0]["id"]
        assert (truncated["item_id"], truncated["content_index"]) == (item_id, 0)
        assert 200 <= truncated["audio_end_ms"] < 5000, truncated  # some, not all, was played
        transcript = (await retrieved(peer, item_id))["content"][0]["transcript"]
        assert ANSWER.startswith(transcript) and len(transcript) < len(ANSWER), transcript
        assert "output_audio_buffer.stopped" not in [e["type"] for e in peer.seen]
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(slow_server))


async def test_barge_in_after_generation_truncates_what_was_still_playing(
    server: ServerHandle,
) -> None:
    """Speech after response.done while its audio still plays: cleared and truncated at
    once; the completed response stays completed."""
    peer = await open_call(server)
    try:
        peer.send({"type": "response.create"})
        done = (await peer.until("response.done"))[-1]["response"]
        assert done["status"] == "completed"
        if "output_audio_buffer.started" not in [e["type"] for e in peer.seen]:
            await peer.until("output_audio_buffer.started")
        peer.mic.speak(0.6)
        events = await peer.until("conversation.item.truncated")
        cleared = next(e for e in events if e["type"] == "output_audio_buffer.cleared")
        assert cleared["response_id"] == done["id"]
        truncated = events[-1]
        assert truncated["item_id"] == done["output"][0]["id"]
        assert 0 <= truncated["audio_end_ms"] < 1800, truncated  # 3 words × 600 ms queued
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(server))


async def test_client_clear_of_a_finished_response_truncates_it(server: ServerHandle) -> None:
    """output_audio_buffer.clear after response.done: the item keeps only the audio played."""
    peer = await open_call(server)
    try:
        peer.send({"type": "response.create"})
        done = (await peer.until("response.done"))[-1]["response"]
        if "output_audio_buffer.started" not in [e["type"] for e in peer.seen]:
            await peer.until("output_audio_buffer.started")
        peer.send({"type": "output_audio_buffer.clear"})
        events = await peer.until("conversation.item.truncated")
        assert [e["type"] for e in events][-2:] == ["output_audio_buffer.cleared",
                                                    "conversation.item.truncated"]
        assert events[-2]["response_id"] == done["id"]
        item = await retrieved(peer, done["output"][0]["id"])
        assert item["content"][0]["transcript"] != "It is noon."
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(server))

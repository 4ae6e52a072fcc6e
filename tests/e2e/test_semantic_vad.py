"""``semantic_vad`` end to end: the official SDK, a real server, Silero and Smart Turn."""

from __future__ import annotations

import asyncio
import time

import pytest

from rtgate.core.turn_detection import SEMANTIC_SILENCE_MS, SEMANTIC_TURN_END
from rtgate.pipeline.turn_model import model_path
from rtgate.testing.audio import chunks, silence_pcm, speech_pcm
from rtgate.testing.server import ServerHandle

from .conftest import Events, client_for, types

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(model_path() is None, reason="pipecat-ai (Smart Turn) is not installed"),
]

CHUNK_MS = 20


async def stream_live(conn: object, pcm: bytes) -> None:
    """Append ``pcm`` in 20 ms chunks on a real-time schedule, as a microphone would."""
    start = time.monotonic()
    for k, chunk in enumerate(chunks(pcm, CHUNK_MS)):
        await conn.input_audio_buffer.append(audio=chunk)  # type: ignore[attr-defined]
        await asyncio.sleep(max(0.0, start + (k + 1) * CHUNK_MS / 1000 - time.monotonic()))


async def test_semantic_vad_turn_keeps_ga_shapes_and_ends_before_the_longest_wait(
    server: ServerHandle,
) -> None:
    """A spoken question under ``semantic_vad``: speech_started, speech_stopped, committed
    and the response, each valid for the SDK; the model ends the turn before any silence
    window would."""
    # A sentence the model calls complete at every pause length it may be asked at
    # (P ≥ 0.98 from 64 to 256 ms of quiet); "What is the capital of France?" scored 0.54
    # at 64 ms and 0.92 at 96, so the frame the pause fell on decided the test.
    question = await speech_pcm("Please turn off the lights.")
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "auto"}}},
        })
        updated = await ev.expect("session.updated")
        detection = updated["session"]["audio"]["input"]["turn_detection"]
        assert detection["type"] == "semantic_vad" and detection["eagerness"] == "auto"
        lead_ms = 300
        sender = asyncio.create_task(stream_live(conn, silence_pcm(lead_ms) + question + silence_pcm(2000)))
        try:
            seen = await ev.until("response.done")
        finally:
            sender.cancel()
        order = [t for t in types(seen) if t.startswith("input_audio_buffer.")]
        assert order == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                         "input_audio_buffer.committed"]
        started, stopped, committed = (next(e for e in seen if e["type"] == t) for t in order)
        assert started["item_id"] == stopped["item_id"] == committed["item_id"]
        voice_end_ms = lead_ms + len(question) / 48
        # Ended by the model: before the longest wait, and before the 700 ms silence window
        # that semantic_vad falls back to without a model.
        assert stopped["audio_end_ms"] < voice_end_ms + SEMANTIC_SILENCE_MS["auto"] - 100
        assert SEMANTIC_SILENCE_MS["auto"] < SEMANTIC_TURN_END["auto"].max_wait_ms
        assert "response.created" in types(seen)


async def test_paused_question_is_one_turn(server: ServerHandle) -> None:
    """Speech, a 600 ms pause inside the sentence, more speech: with ``eagerness: low`` one
    turn, committed once, holding both halves."""
    first = await speech_pcm("I would like to book a table for")
    second = await speech_pcm("two people tonight.")
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.session.update(session={
            "type": "realtime",
            "audio": {"input": {"turn_detection": {
                "type": "semantic_vad", "eagerness": "low", "create_response": False}}},
        })
        await ev.expect("session.updated")
        pcm = silence_pcm(300) + first + silence_pcm(600) + second + silence_pcm(2500)
        sender = asyncio.create_task(stream_live(conn, pcm))
        try:
            seen = await ev.until("input_audio_buffer.committed")
        finally:
            sender.cancel()
        stopped = next(e for e in seen if e["type"] == "input_audio_buffer.speech_stopped")
        resume_ms = 300 + (len(first) + len(silence_pcm(600))) / 48
        assert stopped["audio_end_ms"] > resume_ms
        assert types(seen).count("input_audio_buffer.speech_started") == 1

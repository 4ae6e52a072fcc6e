"""The Preview bridge's edge rules (transport/preview_bridge.py), without a socket.

A real :class:`SessionRunner` with fake backends writes into a recording channel wrapped by
:class:`PreviewChannel`; frames go in through :class:`PreviewBridge`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from rtgate.core.session import Session
from rtgate.pipeline.responder import Pipeline
from rtgate.protocol.client_events import DecodeLimits
from rtgate.protocol.preview import PreviewState
from rtgate.testing.fakes import FakeLLM, FakeTTS
from rtgate.transport.connection import SessionRunner
from rtgate.transport.preview_bridge import PreviewBridge, PreviewChannel


class Recording:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.frames.append(orjson.loads(text))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        pass

    async def next_of(self, type_: str) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for frame in self.frames:
                    if frame["type"] == type_:
                        self.frames.remove(frame)
                        return frame
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[PreviewBridge, Recording]]:
    recording = Recording()
    channel = PreviewChannel(recording, PreviewState(client_model="gpt-4o-realtime-preview"))
    session = Session(session_id="sess_test", model="gpt-4o-realtime-preview", now=time.time())
    runner = SessionRunner(
        session,
        channel,
        Pipeline("fake", FakeLLM(), FakeTTS()),
        vad=None,
        decode_limits=DecodeLimits(),
        queue_events=64,
        send_deadline_s=5.0,
    )
    await runner.start()
    try:
        yield PreviewBridge(runner, channel), recording
    finally:
        await runner.stop()


async def test_malformed_json_gets_the_ga_invalid_json_error(
    bridge: tuple[PreviewBridge, Recording],
) -> None:
    """A frame that is not JSON reaches the GA decoder unchanged: error invalid_json."""
    preview, recording = bridge
    await preview.receive_text("{not json")
    error = (await recording.next_of("error"))["error"]
    assert error["code"] == "invalid_json"


async def test_dropped_field_is_logged_once_and_counted_never_sent(
    bridge: tuple[PreviewBridge, Recording],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Preview temperature has no GA form: one log line, one count, no error event."""
    preview, recording = bridge
    caplog.set_level(logging.WARNING, logger="rtgate.preview")
    for n in range(2):
        await preview.receive_text(
            orjson.dumps(
                {"type": "session.update", "event_id": f"e{n}", "session": {"temperature": 0.61}}
            ).decode()
        )
        await recording.next_of("session.updated")
    assert preview.stats.notices == {"session.temperature": 1}
    lines = [r.getMessage() for r in caplog.records if "session.temperature" in r.getMessage()]
    assert len(lines) == 1 and "0.61" not in lines[0]
    assert not any(f["type"] == "error" for f in recording.frames)


async def test_untranslatable_value_echoes_event_id(bridge: tuple[PreviewBridge, Recording]) -> None:
    """PreviewTranslationError becomes an error event with the client's event_id."""
    preview, recording = bridge
    await preview.receive_text(
        orjson.dumps(
            {"type": "session.update", "event_id": "evt_9", "session": {"output_audio_format": "mp3"}}
        )
    )
    error = (await recording.next_of("error"))["error"]
    assert (error["event_id"], error["param"]) == ("evt_9", "session.output_audio_format")
    assert preview.stats.translation_errors == 1


async def test_outbound_events_are_preview_named(bridge: tuple[PreviewBridge, Recording]) -> None:
    """GA item.added/done leave as Preview conversation.item.created only."""
    preview, recording = bridge
    await preview.receive_text(
        orjson.dumps(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]},
            }
        )
    )
    created = await recording.next_of("conversation.item.created")
    assert created["item"]["content"][0]["text"] == "x"
    # Frames leave in order: once the reply to a later event is out, item.done was handled.
    await preview.receive_text('{"type": "input_audio_buffer.clear"}')
    await recording.next_of("input_audio_buffer.cleared")
    assert all(not f["type"].startswith("conversation.item.added") for f in recording.frames)
    assert preview.state.dropped_server_events["conversation.item.done"] == 1

"""GA text flows and error paths with the official openai SDK against a real server."""

from __future__ import annotations

import pytest
from openai import AsyncAzureOpenAI

from rtgate.testing.server import ServerHandle

from .conftest import Events, assert_error, client_for, types

pytestmark = pytest.mark.e2e

TEXT_SEQUENCE = [
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]


def _collapse(seq: list[str]) -> list[str]:
    out: list[str] = []
    for t in seq:
        if not (out and out[-1] == t and t.endswith(".delta")):
            out.append(t)
    return out


async def test_text_in_text_out_follows_spec_10_1(server: ServerHandle) -> None:
    """SPEC §10.1: a text turn yields the canonical event order, every event valid."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        created = await ev.expect("session.created")
        assert created["session"]["type"] == "realtime"
        assert created["session"]["model"] == "gpt-realtime"
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        updated = await ev.expect("session.updated")
        assert updated["session"]["output_modalities"] == ["text"]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi there"}]}
        )
        await conn.response.create()
        events = await ev.until("rate_limits.updated")
        assert _collapse(types(events)) == TEXT_SEQUENCE
        done = next(e for e in events if e["type"] == "response.done")
        assert done["response"]["status"] == "completed"
        text = done["response"]["output"][0]["content"][0]["text"]
        assert text == "You said: hi there"
        assert done["response"]["usage"]["total_tokens"] > 0


async def test_session_update_errors_are_spec_shaped(server: ServerHandle) -> None:
    """A rejected update names the parameter, echoes event_id, and changes nothing."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        cases = [
            ({"output_modalities": ["text"]}, "missing_required_parameter", "session.type"),
            ({"type": "realtime", "input_audio_format": "pcm16"}, "unknown_parameter",
             "session.input_audio_format"),
            ({"type": "realtime", "audio": {"input": {"format": "pcm16"}}}, "invalid_type",
             "session.audio.input.format"),
            ({"type": "realtime", "audio": {"input": {"turn_detection": {"threshold": 1.5}}}},
             "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
            ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
             "integer_below_min_value", "session.audio.input.format.rate"),
        ]
        for n, (session, code, param) in enumerate(cases):
            await conn.send({"type": "session.update", "event_id": f"evt_{n}", "session": session})
            assert_error(await ev.next(), code, event_id=f"evt_{n}", param=param)
        # A partial turn_detection keeps its type; the session is still usable.
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": {"silence_duration_ms": 500}}}}
        )
        updated = await ev.expect("session.updated")
        td = updated["session"]["audio"]["input"]["turn_detection"]
        assert td == {**td, "type": "server_vad", "silence_duration_ms": 500, "threshold": 0.5}


async def test_bad_frames_get_errors_and_the_session_goes_on(server: ServerHandle) -> None:
    """Malformed JSON, unknown types, wrong types, bad base64, binary frames: non-fatal."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        ws = conn._connection  # the SDK's websockets connection, for raw frames
        await ws.send("{not json")
        assert_error(await ev.next(), "invalid_json")
        await ws.send(b"\x00\x01")
        assert_error(await ev.next(), "invalid_event")
        await conn.send({"type": "response.text.delta", "event_id": "e1"})  # type: ignore[arg-type, typeddict-item]
        assert_error(await ev.next(), "invalid_value", event_id="e1", param="type")
        await ws.send('{"type":"input_audio_buffer.append","audio":"@@@","event_id":"e2"}')
        assert_error(await ev.next(), "invalid_value", event_id="e2", param="audio")
        await ws.send('{"type":"conversation.item.delete","item_id":5,"event_id":"e3"}')
        assert_error(await ev.next(), "invalid_type", event_id="e3", param="item_id")
        await ws.send('{"type":"conversation.item.retrieve","item_id":"nope","event_id":"e4"}')
        assert_error(await ev.next(), "item_not_found", event_id="e4")
        deep = '{"type":"response.create","response":{"metadata":' + '{"a":' * 60 + '1' + '}' * 60 + '}}'
        await ws.send(deep)
        assert (await ev.next())["type"] == "error"
        await conn.input_audio_buffer.commit(event_id="e5")
        assert_error(await ev.next(), "input_audio_buffer_commit_empty", event_id="e5")
        await conn.response.cancel(event_id="e6")
        assert_error(await ev.next(), "response_cancel_not_active", event_id="e6")
        await conn.session.update(session={"type": "realtime", "instructions": "still alive"})
        assert (await ev.expect("session.updated"))["session"]["instructions"] == "still alive"


async def test_wrong_key_gets_error_then_close_3000(server: ServerHandle) -> None:
    """A bad key: an error event (invalid_api_key), then close code 3000."""
    async with client_for(server, key="sk-wrong").realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        assert_error(await ev.next(), "invalid_api_key")
        with pytest.raises(Exception):
            await ev.next()
        assert conn._connection.close_code == 3000


async def test_unknown_model_gets_invalid_model_close_4000(server: ServerHandle) -> None:
    async with client_for(server).realtime.connect(model="no-such-model") as conn:
        ev = Events(conn)
        assert_error(await ev.next(), "invalid_model")
        with pytest.raises(Exception):
            await ev.next()
        assert conn._connection.close_code == 4000


@pytest.mark.parametrize("path", ["/openai", "/openai/v1"])
async def test_azure_client_on_both_paths(server: ServerHandle, path: str) -> None:
    """SPEC §2.3: AsyncAzureOpenAI speaks GA on /openai/realtime?api-version&deployment."""
    client = AsyncAzureOpenAI(
        api_key="sk-test",
        azure_endpoint=server.http_url,
        api_version="2025-08-28",
        websocket_base_url=f"{server.ws_url}{path}",
    )
    async with client.realtime.connect(model="gpt-realtime-mini") as conn:
        ev = Events(conn)
        created = await ev.expect("session.created")
        assert created["session"]["model"] == "gpt-realtime-mini"
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.expect("session.updated")
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "azure"}]}
        )
        await conn.response.create()
        events = await ev.until("response.done")
        assert events[-1]["response"]["status"] == "completed"

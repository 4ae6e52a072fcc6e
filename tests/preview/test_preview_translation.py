"""The Preview bridge translation (SPEC §11, Appendix A): rules, round trips, schema checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from preview_strategies import (
    PREVIEW_MODEL,
    assert_valid_ga_client_event,
    ga_session_from_preview,
    preview_item,
    preview_response_params,
    preview_session,
    preview_transcription_session,
)

from rtgate.protocol.preview import (
    Notice,
    PreviewState,
    PreviewTranslationError,
    ga_server_to_preview,
    preview_client_to_ga,
    preview_sessions_request_to_ga,
)

JSON = dict[str, Any]
EXAMPLES = settings(max_examples=60, deadline=None, database=None)


def to_ga(event: JSON, state: PreviewState | None = None) -> tuple[JSON, list[Notice]]:
    events, notices = preview_client_to_ga(event, state or PreviewState())
    assert len(events) == 1
    return events[0], notices


def to_preview(event: JSON, state: PreviewState | None = None) -> list[JSON]:
    return ga_server_to_preview(event, state or PreviewState())


def normalised_preview_session(session: JSON) -> JSON:
    """What a Preview session means, independent of spelling the GA round trip may change."""
    out = {k: v for k, v in session.items() if k != "temperature"}
    if "modalities" in out:
        out["modalities"] = sorted(out["modalities"])
    if isinstance(out.get("turn_detection"), dict):
        out["turn_detection"] = {"type": "server_vad", **out["turn_detection"]}
    if "tools" in out:
        out["tools"] = [{"type": "function", **t} for t in out["tools"]]
    return out


# --- client side: Preview → GA -----------------------------------------------------------


@EXAMPLES
@given(preview_session)
def test_session_update_translates_to_a_valid_ga_realtime_update(session: JSON) -> None:
    """Any flat Preview session.update becomes a GA session.update the GA SDK accepts."""
    ga, _ = to_ga({"type": "session.update", "event_id": "c1", "session": session})
    assert ga["session"]["type"] == "realtime"
    assert_valid_ga_client_event(ga)


@EXAMPLES
@given(preview_transcription_session)
def test_transcription_session_update_becomes_ga_transcription_session(session: JSON) -> None:
    """transcription_session.update → session.update with session.type "transcription"."""
    state = PreviewState()
    ga, _ = to_ga({"type": "transcription_session.update", "session": session}, state)
    assert ga["type"] == "session.update"
    assert ga["session"]["type"] == "transcription"
    assert state.transcription
    assert_valid_ga_client_event(ga)


@EXAMPLES
@given(preview_session)
def test_session_round_trip_preview_ga_preview(session: JSON) -> None:
    """Preview → GA → Preview keeps every field both dialects have."""
    ga_session = ga_session_from_preview(session)
    (created, _conv) = to_preview(
        {"type": "session.created", "event_id": "e", "session": ga_session}
    )
    back = {k: v for k, v in created["session"].items() if k in session}
    assert normalised_preview_session(back) == normalised_preview_session(session)


@EXAMPLES
@given(preview_transcription_session)
def test_transcription_session_round_trip(session: JSON) -> None:
    """A Preview transcription session survives the GA round trip."""
    ga_session = ga_session_from_preview(session, transcription=True)
    state = PreviewState(transcription=True)
    (updated,) = to_preview(
        {"type": "session.updated", "event_id": "e", "session": ga_session}, state
    )
    assert updated["type"] == "transcription_session.updated"
    assert {k: v for k, v in updated["session"].items() if k in session} == session


@EXAMPLES
@given(preview_item)
def test_item_round_trip_preview_ga_preview(item: JSON) -> None:
    """conversation.item.create → GA item → conversation.item.created carries the same item."""
    ga, notices = to_ga({"type": "conversation.item.create", "item": item})
    assert notices == []
    assert_valid_ga_client_event(ga)
    (created,) = to_preview(
        {"type": "conversation.item.added", "event_id": "e", "item": ga["item"]}
    )
    assert created["type"] == "conversation.item.created"
    assert created["item"] == item


@EXAMPLES
@given(preview_response_params)
def test_response_create_translates_to_valid_ga(params: JSON) -> None:
    """Preview response.create.response fields become valid GA response params."""
    ga, _ = to_ga({"type": "response.create", "response": params})
    assert_valid_ga_client_event(ga)
    assert "temperature" not in ga["response"]
    assert "modalities" not in ga["response"]


def test_assistant_content_types_are_renamed() -> None:
    """Assistant text/audio content becomes output_text/output_audio (SPEC §11.4)."""
    item = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "hi"}]}
    ga, _ = to_ga({"type": "conversation.item.create", "item": item})
    assert ga["item"]["content"] == [{"type": "output_text", "text": "hi"}]


@pytest.mark.parametrize(
    ("preview", "ga"),
    [(["text", "audio"], ["audio"]), (["audio", "text"], ["audio"]), (["text"], ["text"])],
)
def test_modalities_map_to_output_modalities(preview: list[str], ga: list[str]) -> None:
    """Preview text+audio is GA ["audio"] (audio with transcript); text stays text."""
    out, notices = to_ga({"type": "session.update", "session": {"modalities": preview}})
    assert out["session"]["output_modalities"] == ga
    assert notices == []


def test_ga_audio_modality_reads_back_as_audio_and_text() -> None:
    """GA ["audio"] is reported to Preview clients as ["audio","text"]."""
    session = {"type": "realtime", "output_modalities": ["audio"]}
    (ev, _) = to_preview({"type": "session.created", "event_id": "e", "session": session})
    assert ev["session"]["modalities"] == ["audio", "text"]


def test_flat_session_fields_land_in_nested_ga_places() -> None:
    """Formats, voice, speed, VAD, transcription, noise reduction, token limit (SPEC §11.3)."""
    ga, _ = to_ga(
        {
            "type": "session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "pcm16",
                "voice": "verse",
                "speed": 1.2,
                "turn_detection": {"threshold": 0.6},
                "input_audio_transcription": {"model": "whisper-1"},
                "input_audio_noise_reduction": {"type": "near_field"},
                "max_response_output_tokens": 100,
            },
        }
    )
    assert ga["session"] == {
        "type": "realtime",
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad", "threshold": 0.6},
                "transcription": {"model": "whisper-1"},
                "noise_reduction": {"type": "near_field"},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "verse",
                "speed": 1.2,
            },
        },
        "max_output_tokens": 100,
    }


def test_bare_function_name_tool_choice_becomes_function_object() -> None:
    """tool_choice "get_weather" → {type:"function", name:"get_weather"}; modes stay strings."""
    ga, _ = to_ga({"type": "session.update", "session": {"tool_choice": "get_weather"}})
    assert ga["session"]["tool_choice"] == {"type": "function", "name": "get_weather"}
    ga, _ = to_ga({"type": "response.create", "response": {"tool_choice": "required"}})
    assert ga["response"]["tool_choice"] == "required"


def test_temperature_is_dropped_with_one_notice_per_connection() -> None:
    """A field with no GA equivalent is left out and reported once, not silently."""
    state = PreviewState()
    ga, notices = to_ga({"type": "session.update", "session": {"temperature": 0.7}}, state)
    assert "temperature" not in ga["session"]
    assert [n.param for n in notices] == ["session.temperature"]
    assert "temperature" in notices[0].message
    _, again = to_ga({"type": "session.update", "session": {"temperature": 0.9}}, state)
    assert again == []
    _, response = to_ga({"type": "response.create", "response": {"temperature": 0.9}}, state)
    assert [n.param for n in response] == ["response.temperature"]


def test_vad_field_foreign_to_the_detector_is_dropped_with_notice() -> None:
    """eagerness belongs to semantic_vad; with server_vad it is reported and left out."""
    ga, notices = to_ga(
        {
            "type": "session.update",
            "session": {"turn_detection": {"type": "server_vad", "eagerness": "low"}},
        }
    )
    assert ga["session"]["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    assert [n.param for n in notices] == ["session.turn_detection.eagerness"]


def test_transcription_session_modalities_dropped_with_notice() -> None:
    """A GA transcription session has no output side; modalities is reported."""
    ga, notices = to_ga(
        {"type": "transcription_session.update", "session": {"modalities": ["text"]}}
    )
    assert ga["session"] == {"type": "transcription"}
    assert [n.param for n in notices] == ["session.modalities"]


def test_unknown_audio_format_is_an_error_naming_the_parameter() -> None:
    """An unknown format string raises an invalid_value error the transport can send."""
    with pytest.raises(PreviewTranslationError) as err:
        to_ga({"type": "session.update", "session": {"input_audio_format": "mp3"}})
    assert err.value.param == "session.input_audio_format"
    assert "pcm16" in err.value.message


def test_item_reference_content_part_in_item_create_is_an_error() -> None:
    """A Preview item_reference content part has no GA form inside an item."""
    item = {"type": "message", "role": "user", "content": [{"type": "item_reference", "id": "i1"}]}
    with pytest.raises(PreviewTranslationError) as err:
        to_ga({"type": "conversation.item.create", "item": item})
    assert err.value.param == "item.content[0].type"


def test_item_references_in_response_input_become_ga_references() -> None:
    """In response.create input, Preview references become GA {type:"item_reference", id}."""
    params = {
        "input": [
            {"type": "item_reference", "id": "a"},
            {"type": "message", "role": "user", "content": [{"type": "item_reference", "id": "b"}]},
        ]
    }
    ga, _ = to_ga({"type": "response.create", "response": params})
    assert ga["response"]["input"] == [
        {"type": "item_reference", "id": "a"},
        {"type": "item_reference", "id": "b"},
    ]
    assert_valid_ga_client_event(ga)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "input_audio_buffer.commit", "event_id": "x"},
        {"type": "input_audio_buffer.clear"},
        {
            "type": "conversation.item.truncate",
            "item_id": "i",
            "content_index": 0,
            "audio_end_ms": 5,
        },
        {"type": "conversation.item.delete", "item_id": "i"},
        {"type": "conversation.item.retrieve", "item_id": "i"},
        {"type": "response.cancel"},
        {"type": "output_audio_buffer.clear"},
    ],
)
def test_unchanged_client_events_pass_through(event: JSON) -> None:
    """Client events with the same name and shape in both dialects pass unchanged."""
    ga, notices = to_ga(copy.deepcopy(event))
    assert ga == event
    assert notices == []
    assert_valid_ga_client_event(ga)


# --- server side: GA → Preview -----------------------------------------------------------


def test_session_created_is_followed_by_conversation_created_once() -> None:
    """Preview servers sent conversation.created right after session.created."""
    state = PreviewState(client_model=PREVIEW_MODEL)
    session = ga_session_from_preview({})
    events = to_preview(
        {"type": "session.created", "event_id": "event_1", "session": session}, state
    )
    assert [e["type"] for e in events] == ["session.created", "conversation.created"]
    assert events[1]["conversation"] == {"id": "conv_1", "object": "realtime.conversation"}
    assert events[0]["session"]["model"] == PREVIEW_MODEL
    again = to_preview(
        {"type": "session.updated", "event_id": "event_2", "session": session}, state
    )
    assert [e["type"] for e in again] == ["session.updated"]


def test_transcription_client_gets_transcription_session_events() -> None:
    """A transcription connection sees transcription_session.created/updated, no conversation."""
    state = PreviewState()
    session = ga_session_from_preview({}, transcription=True)
    created = to_preview({"type": "session.created", "event_id": "e", "session": session}, state)
    assert [e["type"] for e in created] == ["transcription_session.created"]
    assert created[0]["session"]["object"] == "realtime.transcription_session"
    updated = to_preview({"type": "session.updated", "event_id": "e", "session": session}, state)
    assert [e["type"] for e in updated] == ["transcription_session.updated"]


@pytest.mark.parametrize(
    ("ga", "preview"),
    [
        ("response.output_text.delta", "response.text.delta"),
        ("response.output_text.done", "response.text.done"),
        ("response.output_audio.delta", "response.audio.delta"),
        ("response.output_audio.done", "response.audio.done"),
        ("response.output_audio_transcript.delta", "response.audio_transcript.delta"),
        ("response.output_audio_transcript.done", "response.audio_transcript.done"),
        ("conversation.item.added", "conversation.item.created"),
    ],
)
def test_renamed_server_events(ga: str, preview: str) -> None:
    """GA server event names map back to their Preview names (SPEC §11.2)."""
    (out,) = to_preview({"type": ga, "event_id": "e", "item_id": "i"})
    assert out["type"] == preview


@pytest.mark.parametrize(
    "kind",
    [
        "conversation.item.done",
        "input_audio_buffer.timeout_triggered",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.dtmf_event_received",
        "mcp_list_tools.completed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call.completed",
        "some.future.event",
    ],
)
def test_ga_only_server_events_are_dropped_and_counted(kind: str) -> None:
    """GA events with no Preview counterpart never reach a Preview client."""
    state = PreviewState()
    assert to_preview({"type": kind, "event_id": "e"}, state) == []
    assert state.dropped_server_events[kind] == 1


def test_response_object_is_reshaped() -> None:
    """output_modalities, audio.output.{voice,format} → modalities, voice, output_audio_format."""
    response = {
        "object": "realtime.response",
        "id": "resp_1",
        "status": "completed",
        "output_modalities": ["audio"],
        "audio": {"output": {"format": {"type": "audio/pcma"}, "voice": "ash"}},
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": "hi"}],
            },
            {"type": "mcp_call", "id": "m", "name": "n", "arguments": "{}", "server_label": "s"},
        ],
    }
    (out,) = to_preview({"type": "response.done", "event_id": "e", "response": response})
    r = out["response"]
    assert (r["modalities"], r["voice"], r["output_audio_format"]) == (
        ["audio", "text"],
        "ash",
        "g711_alaw",
    )
    assert "audio" not in r and "output_modalities" not in r
    assert r["output"] == [
        {"type": "message", "role": "assistant", "content": [{"type": "audio", "transcript": "hi"}]}
    ]


def test_function_call_arguments_done_keeps_name() -> None:
    """GA's name on function_call_arguments.done is kept (extra fields are allowed in Preview)."""
    ev = {
        "type": "response.function_call_arguments.done",
        "event_id": "e",
        "response_id": "r",
        "item_id": "i",
        "output_index": 0,
        "call_id": "c",
        "name": "f",
        "arguments": "{}",
    }
    assert to_preview(dict(ev)) == [ev]


def test_sessions_request_body_translates_with_ttl() -> None:
    """A Preview POST /realtime/sessions body becomes a GA session config and a key TTL."""
    req = preview_sessions_request_to_ga(
        {
            "model": PREVIEW_MODEL,
            "modalities": ["audio", "text"],
            "voice": "verse",
            "temperature": 0.8,
            "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 120}},
        },
        transcription=False,
    )
    assert req.session == {
        "type": "realtime",
        "model": PREVIEW_MODEL,
        "output_modalities": ["audio"],
        "audio": {"output": {"voice": "verse"}},
    }
    assert req.ttl_s == 120
    assert [n.param for n in req.notices] == ["session.temperature"]
    tx = preview_sessions_request_to_ga({"input_audio_format": "pcm16"}, transcription=True)
    assert tx.session == {
        "type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
    }
    assert tx.ttl_s is None

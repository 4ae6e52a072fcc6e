"""Session objects and ``session.update`` (SPEC §4)."""

from __future__ import annotations

from typing import Any

import pytest

from rtgate.protocol.session import DEFAULT_INSTRUCTIONS

from .helpers import T0, Harness, assert_error, assert_events, events, first


def updated(h: Harness, session: dict[str, Any]) -> dict[str, Any]:
    out = h.update(session)
    assert_events(out, ["session.updated"])
    wire: dict[str, Any] = first(out, "session.updated")["session"]
    return wire


def test_session_created_first_with_full_config() -> None:
    """SPEC §4.1: ``session.created`` comes first, with id, object, type, model, expires_at."""
    h = Harness()
    assert_events(h.created, ["session.created"])
    s = h.created[0]["session"]  # type: ignore[index]
    assert s["type"] == "realtime"
    assert s["object"] == "realtime.session"
    assert s["id"] == "sess_unit"
    assert s["model"] == "gpt-realtime"
    assert s["expires_at"] == int(T0) + 3600
    assert s["output_modalities"] == ["audio"]
    assert s["instructions"] == DEFAULT_INSTRUCTIONS
    assert s["tools"] == [] and s["tool_choice"] == "auto" and s["max_output_tokens"] == "inf"
    assert s["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": None,
        "noise_reduction": None,
        "turn_detection": {
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 200, "idle_timeout_ms": None,
            "create_response": True, "interrupt_response": True,
        },
    }
    assert s["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0,
    }


def test_session_updated_carries_full_config() -> None:
    """SPEC §4.1: ``session.updated`` carries the full effective config, not the delta."""
    s = updated(Harness(), {"type": "realtime", "output_modalities": ["text"]})
    assert s["output_modalities"] == ["text"]
    assert s["id"] == "sess_unit" and s["model"] == "gpt-realtime"
    assert s["audio"]["output"]["voice"] == "alloy"
    assert s["instructions"] == DEFAULT_INSTRUCTIONS


def test_partial_turn_detection_keeps_type() -> None:
    """SPEC §4.1: a partial ``turn_detection`` deep-merges and keeps its ``type``."""
    s = updated(Harness(), {"type": "realtime",
                            "audio": {"input": {"turn_detection": {"silence_duration_ms": 800}}}})
    td = s["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"
    assert td["silence_duration_ms"] == 800
    assert td["threshold"] == 0.5 and td["prefix_padding_ms"] == 300


def test_partial_audio_update_leaves_siblings() -> None:
    """SPEC §4.1: omitting ``noise_reduction`` (or ``output``) leaves it unchanged."""
    h = Harness()
    updated(h, {"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "near_field"}},
                                              "output": {"voice": "marin"}}})
    s = updated(h, {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert s["audio"]["input"]["noise_reduction"] == {"type": "near_field", "strength": 1.0}
    assert s["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert s["audio"]["output"]["voice"] == "marin"


def test_changing_turn_detection_type_replaces_it() -> None:
    """SPEC §4.1: a new ``turn_detection.type`` replaces the object (no server_vad leftovers)."""
    s = updated(Harness(), {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}})
    assert s["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "low",
        "create_response": True, "interrupt_response": True,
    }


@pytest.mark.parametrize("field", ["turn_detection", "transcription", "noise_reduction"])
def test_null_clears_input_audio_objects(field: str) -> None:
    """SPEC §4.1: ``null`` clears turn_detection / transcription / noise_reduction."""
    h = Harness()
    updated(h, {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"}, "noise_reduction": {"type": "far_field"}}}})
    s = updated(h, {"type": "realtime", "audio": {"input": {field: None}}})
    assert s["audio"]["input"][field] is None


def test_empty_string_clears_instructions() -> None:
    """SPEC §4.1: ``""`` clears ``instructions``."""
    assert updated(Harness(), {"type": "realtime", "instructions": ""})["instructions"] == ""


def test_empty_list_clears_tools() -> None:
    """SPEC §4.1: ``[]`` clears ``tools``."""
    h = Harness()
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    assert len(updated(h, {"type": "realtime", "tools": [tool]})["tools"]) == 1
    assert updated(h, {"type": "realtime", "tools": []})["tools"] == []


def test_transcription_echoed_with_model_language_prompt() -> None:
    """SPEC §4.1: transcription is echoed as ``{model, language: null, prompt: null}``."""
    s = updated(Harness(), {"type": "realtime",
                            "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    assert s["audio"]["input"]["transcription"] == {
        "model": "whisper-1", "language": None, "prompt": None}


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"output_modalities": ["text"]}, "missing_required_parameter", "session.type"),
        ({"type": "realtime", "input_audio_format": "pcm16"},
         "unknown_parameter", "session.input_audio_format"),
        ({"type": "realtime", "modalities": ["text"]}, "unknown_parameter", "session.modalities"),
        ({"type": "realtime", "bogus_field": 1}, "unknown_parameter", "session.bogus_field"),
        ({"type": "realtime", "audio": {"input": {"format": "pcm16"}}},
         "invalid_type", "session.audio.input.format"),
        ({"type": "realtime", "audio": {"output": {"format": {"type": "audio/mp3"}}}},
         "invalid_value", "session.audio.output.format.type"),
        ({"type": "realtime", "audio": {"input": {"transcription": {"delay": "soon"}}}},
         "invalid_value", "session.audio.input.transcription.delay"),
        ({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
         "integer_below_min_value", "session.audio.input.format.rate"),
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"threshold": 1.5}}}},
         "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
        ({"type": "realtime", "audio": {"output": {"speed": 3}}},
         "integer_above_max_value", "session.audio.output.speed"),
        ({"type": "realtime", "audio": {"output": {"speed": 0.1}}},
         "decimal_below_min_value", "session.audio.output.speed"),
        ({"type": "realtime", "max_output_tokens": 0},
         "integer_below_min_value", "session.max_output_tokens"),
        ({"type": "realtime", "model": "gpt-realtime-mini"}, "invalid_value", "session.model"),
        ({"type": "transcription"}, "invalid_value", "session.type"),
        ({"type": "chat"}, "invalid_value", "session.type"),
    ],
)
def test_invalid_update_is_rejected_whole(session: dict[str, Any], code: str, param: str) -> None:
    """SPEC §3/§4.1/§9.2: any invalid field rejects the whole update with the cloud's code."""
    h = Harness()
    out = h.update({**session, "instructions": "changed"}, event_id="evt_upd")
    assert_error(out, code=code, param=param, event_id="evt_upd")
    # Nothing of the update applied: the next update sees the old instructions.
    s = updated(h, {"type": "realtime"})
    assert s["instructions"] == DEFAULT_INSTRUCTIONS
    assert s["audio"]["input"]["turn_detection"]["threshold"] == 0.5


def test_same_model_in_update_is_accepted() -> None:
    """SPEC §4.1: ``model`` cannot change, but echoing the current model is fine."""
    assert updated(Harness(), {"type": "realtime", "model": "gpt-realtime"})["model"] == (
        "gpt-realtime"
    )


def test_voice_change_allowed_before_audio() -> None:
    """SPEC §4.1: the voice may change until the first audio output."""
    s = updated(Harness(), {"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
    assert s["audio"]["output"]["voice"] == "cedar"


def test_voice_change_rejected_after_audio_produced() -> None:
    """SPEC §4.1: once audio was produced, the voice cannot change (the response may still run)."""
    h = Harness()
    rid = h.start_response()
    h.audio(rid, bytes(4800), "Hello")
    out = h.update({"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
    assert_error(out, code="cannot_update_voice", param="session.audio.output.voice")
    h.done(rid)
    out = h.update({"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
    assert_error(out, code="cannot_update_voice")
    # Other fields still update, and repeating the same voice is fine.
    s = updated(h, {"type": "realtime", "audio": {"output": {"voice": "alloy", "speed": 1.2}}})
    assert s["audio"]["output"]["speed"] == 1.2


def test_transcription_session_created() -> None:
    """SPEC §4.2/§10.4: a transcription session has its own object and no realtime fields."""
    h = Harness(kind="transcription")
    s = h.created[0]["session"]  # type: ignore[index]
    assert s["type"] == "transcription"
    assert s["object"] == "realtime.transcription_session"
    assert s["id"] == "sess_unit" and s["expires_at"] == int(T0) + 3600
    assert set(s) == {"type", "object", "id", "expires_at", "audio", "include"}
    assert set(s["audio"]) == {"input"}
    assert s["audio"]["input"]["turn_detection"]["type"] == "server_vad"


def test_transcription_session_update() -> None:
    """SPEC §10.4 step 3: the typical first update of a transcription session."""
    h = Harness(kind="transcription")
    out = h.update({"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
        "turn_detection": {"type": "server_vad"}}}})
    assert_events(out, ["session.updated"])
    s = events(out)[0]["session"]
    assert s["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-mini-transcribe", "language": "en", "prompt": None}


def test_transcription_session_rejects_realtime_fields() -> None:
    """SPEC §4.2: ``instructions`` is not a transcription session field."""
    h = Harness(kind="transcription")
    out = h.update({"type": "transcription", "instructions": "x"})
    assert_error(out, code="unknown_parameter", param="session.instructions")


def test_session_type_cannot_change() -> None:
    """SPEC §4: the session type is fixed when the session is created."""
    out = Harness(kind="transcription").update({"type": "realtime"})
    assert_error(out, code="invalid_value", param="session.type")


def test_read_only_fields_echoed_back_are_ignored() -> None:
    """A client may echo ``session.created`` back; id/object/expires_at are output-only."""
    h = Harness()
    echo = dict(h.created[0]["session"])  # type: ignore[index]
    echo["instructions"] = "Be brief."
    s = updated(h, echo)
    assert s["instructions"] == "Be brief." and s["id"] == "sess_unit"

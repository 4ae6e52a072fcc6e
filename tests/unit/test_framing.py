"""Framing errors reported through the session (SPEC §3, §9): non-fatal, event_id echoed."""

from __future__ import annotations

from rtgate.protocol.client_events import decode_client_event
from rtgate.protocol.errors import RealtimeError

from .helpers import Harness, assert_error, assert_events, checked, silence


def report(h: Harness, frame: str) -> list[object]:
    decoded = decode_client_event(frame)
    assert isinstance(decoded, RealtimeError)
    return checked(h.session.report(decoded))  # type: ignore[return-value]


def test_malformed_json_is_invalid_json() -> None:
    """SPEC §3: malformed JSON → ``invalid_json``, param null."""
    assert_error(report(Harness(), "{not json"), code="invalid_json", param=None,  # type: ignore[arg-type]
                 event_id=None)


def test_unknown_event_type_is_invalid_value() -> None:
    """SPEC §3: an unknown client ``type`` → ``invalid_value`` on param ``type``."""
    out = Harness().send({"type": "response.explode", "event_id": "x1"})
    event = assert_error(out, code="invalid_value", param="type", event_id="x1")
    assert "input_audio_buffer.append" in event["error"]["message"]


def test_preview_event_type_is_invalid_value() -> None:
    """SPEC §3: Preview-only types (``conversation.item.input_audio_transcription…``) are unknown."""
    out = Harness().send({"type": "transcription_session.update", "session": {}})
    assert_error(out, code="invalid_value", param="type")


def test_unknown_top_level_field_is_unknown_parameter() -> None:
    """SPEC §3: an unknown field → ``unknown_parameter``."""
    out = Harness().send({"type": "input_audio_buffer.commit", "bogus": 1, "event_id": "x2"})
    assert_error(out, code="unknown_parameter", param="bogus", event_id="x2")


def test_wrong_type_is_invalid_type() -> None:
    """SPEC §9.2: a wrong JSON type → ``invalid_type`` with the path."""
    out = Harness().send({"type": "conversation.item.retrieve", "item_id": 7, "event_id": "x3"})
    assert_error(out, code="invalid_type", param="item_id", event_id="x3")


def test_deep_nesting_rejected() -> None:
    """Issue 2: very deeply nested JSON is an error event, not a crash."""
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    out = Harness().send({"type": "session.update", "session": deep, "event_id": "x4"})
    assert_error(out, code="invalid_value", event_id="x4")


def test_output_audio_buffer_clear_is_webrtc_only() -> None:
    """SPEC §3: ``output_audio_buffer.clear`` is WebRTC/SIP-only."""
    out = Harness().send({"type": "output_audio_buffer.clear", "event_id": "x5"})
    assert_error(out, code="invalid_value", param="type", event_id="x5")


def test_session_usable_after_errors() -> None:
    """SPEC §3: errors are non-fatal; the session keeps working."""
    h = Harness()
    h.send({"type": "nope"})
    h.send({"type": "input_audio_buffer.append", "audio": "***"})
    h.append(silence(100))
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert_events(h.commit(), ["input_audio_buffer.committed", "conversation.item.added",
                               "conversation.item.done"])

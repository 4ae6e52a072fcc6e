"""Session expiry (SPEC §9.2 ``session_expired``) and input transcription results (SPEC §8, §10.4)."""

from __future__ import annotations

from rtgate.core import effects as fx
from rtgate.core.limits import CoreLimits

from .helpers import (
    T0,
    Harness,
    assert_error,
    assert_events,
    checked,
    effects,
    events,
    silence,
)


def test_tick_before_expiry_does_nothing() -> None:
    """SPEC §4.1: the session lives until ``expires_at``."""
    h = Harness()
    assert h.session.next_deadline() == T0 + 3600
    assert h.tick(T0 + 3599.9) == []


def test_expiry_sends_session_expired_then_close() -> None:
    """SPEC §9.2: at expiry an ``error`` ``session_expired``, then the connection closes."""
    h = Harness()
    out = h.tick(T0 + 3600)
    event = assert_error(events(out)[0], code="session_expired", param=None, event_id=None)
    assert "60 minutes" in event["error"]["message"]
    assert len(events(out)) == 1
    assert isinstance(out[-1], fx.Close)


def test_nothing_after_expiry() -> None:
    """SPEC §9.2: after ``session_expired`` the session emits nothing more."""
    h = Harness()
    h.append(silence(500))
    h.tick(T0 + 3600)
    assert h.commit() == []
    assert h.create_response() == []
    assert h.vad(0, [0.9] * 20) == []
    assert h.tick(T0 + 7200) == []


def test_expiry_cancels_running_responses() -> None:
    """Issue 2: no response outlives its session; the error comes first, the close last."""
    h = Harness()
    h.update({"type": "realtime", "output_modalities": ["text"]})
    rid = h.start_response()
    h.text(rid, "partial")
    out = h.tick(T0 + 3600)
    assert_error(events(out)[0], code="session_expired")
    assert fx.CancelResponse(rid) in effects(out)
    assert isinstance(out[-1], fx.Close)
    assert h.text(rid, "late") == []
    assert h.done(rid) == []


def test_lifetime_is_a_setting() -> None:
    """Issue 2: the session lifetime is a named limit."""
    h = Harness(limits=CoreLimits(session_lifetime_s=60))
    assert h.created[0]["session"]["expires_at"] == int(T0) + 60  # type: ignore[index]
    event = events(h.tick(T0 + 60))[0]
    assert "1 minutes" in event["error"]["message"]


def committed_item(h: Harness) -> str:
    h.append(silence(200))
    return str(events(h.commit())[0]["item_id"])


def manual_transcription() -> Harness:
    h = Harness(kind="transcription")
    h.update({"type": "transcription", "audio": {"input": {
        "transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": None}}})
    return h


def test_transcription_delta_and_completed() -> None:
    """SPEC §10.4 steps 7-8: deltas then ``completed`` with duration usage."""
    h = manual_transcription()
    item_id = committed_item(h)
    out = checked(h.session.on_transcription_delta(item_id, "Hello "))
    out += checked(h.session.on_transcription_delta(item_id, "world"))
    out += checked(h.session.on_transcription_completed(item_id, "Hello world", 0.2))
    assert_events(out, [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ])
    delta, _, completed = events(out)
    assert (delta["item_id"], delta["content_index"], delta["delta"]) == (item_id, 0, "Hello ")
    assert completed["transcript"] == "Hello world"
    assert completed["usage"] == {"type": "duration", "seconds": 0.2}


def test_transcript_stored_on_item() -> None:
    """SPEC §8: the completed transcript is stored on the item (seen by retrieve)."""
    h = manual_transcription()
    item_id = committed_item(h)
    h.session.on_transcription_completed(item_id, "Hello world", 0.2)
    out = h.send({"type": "conversation.item.retrieve", "item_id": item_id})
    content = events(out)[0]["item"]["content"][0]
    assert content["transcript"] == "Hello world"
    assert content["audio"]  # retrieve carries the audio too


def test_transcription_failed() -> None:
    """SPEC §10.4: the failure path carries ``error{type, code, message, param}``."""
    h = manual_transcription()
    item_id = committed_item(h)
    out = checked(h.session.on_transcription_failed(item_id, "stt_error", "Engine crashed."))
    assert_events(out, ["conversation.item.input_audio_transcription.failed"])
    error = events(out)[0]["error"]
    assert error == {"type": "server_error", "code": "stt_error", "message": "Engine crashed.",
                     "param": None}


def test_transcription_of_deleted_item_is_dropped() -> None:
    """SPEC §10.4: results are correlated by item; a gone item gets no events."""
    h = manual_transcription()
    item_id = committed_item(h)
    h.send({"type": "conversation.item.delete", "item_id": item_id})
    assert h.session.on_transcription_delta(item_id, "x") == []
    assert h.session.on_transcription_completed(item_id, "x", 1.0) == []
    assert h.session.on_transcription_failed(item_id, "c", "m") == []


def test_realtime_session_transcription_events() -> None:
    """SPEC §10.2 step 7: a realtime session with transcription gets the same events."""
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"},
                                                      "turn_detection": None}}})
    item_id = committed_item(h)
    out = checked(h.session.on_transcription_completed(item_id, "Hi", 0.2))
    assert_events(out, ["conversation.item.input_audio_transcription.completed"])

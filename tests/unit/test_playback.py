"""Server-side playback decided in the core (core/playback.py): audio handed to the player
as typed effects, progress reported back, barge-in and truncation decided once. Pure: no
player, no event loop; every event is validated against the SDK (helpers.checked). Also the
other event a call's edge reports to the core: a DTMF key press."""

from __future__ import annotations

from rtgate.audio import ulaw_to_pcm16
from rtgate.core import effects as fx
from rtgate.testing.validate import validate_server_event

from .helpers import Harness, assert_events, effects, events, first, silence, types, user_text

LOUD = 0.9
PCM_PER_MS = 48  # PCM16 at the default 24 kHz player rate


def call(**kw: object) -> Harness:
    """A call's session (the server plays the audio) with 2 s of input buffered."""
    h = Harness(plays_audio=True, **kw)  # type: ignore[arg-type]
    h.append(silence(2000))
    h.create_item(user_text("hi"))
    return h


def play(h: Harness, rid: str, *chunks: tuple[int, str]) -> list[fx.PlayAudio]:
    """Backend audio of ``ms`` milliseconds with its transcript, per chunk; returns the
    PlayAudio effects."""
    out = []
    for ms, transcript in chunks:
        out += h.audio(rid, silence(ms), transcript)
    assert "response.output_audio.delta" not in types(out)  # a call carries no audio deltas
    return [e for e in effects(out) if isinstance(e, fx.PlayAudio)]


def cuts(outputs: list[fx.Effect | dict[str, object]]) -> list[fx.Effect]:
    """The effects of ``outputs`` but those of turn detection (utterances, transcription)."""
    turn = fx.UtteranceStarted | fx.UtteranceStopped | fx.StartTranscription
    return [e for e in effects(outputs) if not isinstance(e, turn)]  # type: ignore[arg-type]


def heard(h: Harness, rid: str, item_id: str, ms: float) -> None:
    """The player reports ``ms`` of the part played."""
    h.session.on_audio_played(rid, item_id, 0, int(ms * PCM_PER_MS))


def retrieve(h: Harness, item_id: str) -> dict[str, object]:
    out = h.send({"type": "conversation.item.retrieve", "item_id": item_id})
    return first(out, "conversation.item.retrieved")["item"]  # type: ignore[no-any-return]


def test_audio_goes_to_the_player_as_pcm_not_as_deltas() -> None:
    h = call()
    rid = h.start_response()
    out = h.audio(rid, b"\x01\x02" * 480, "Hello")
    assert_events(out, ["response.output_item.added", "conversation.item.added",
                        "response.content_part.added", "response.output_audio_transcript.delta"])
    [effect] = effects(out)
    item_id = first(out, "response.output_item.added")["item"]["id"]
    assert effect == fx.PlayAudio(rid, item_id, 0, b"\x01\x02" * 480, 24_000)


def test_g711_audio_is_decoded_for_the_players_rate() -> None:
    h = call()
    h.session.playback.sample_rate = 8000  # type: ignore[union-attr]  # a SIP call's track
    h.update({"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}})
    rid = h.start_response()
    ulaw = b"\x10\x80\xff" * 160  # 60 ms at 8 kHz
    [effect] = [e for e in effects(h.audio(rid, ulaw, "Hi")) if isinstance(e, fx.PlayAudio)]
    assert effect.pcm == ulaw_to_pcm16(ulaw) and effect.sample_rate == 8000


def test_websocket_sessions_still_get_deltas() -> None:
    h = Harness()
    h.create_item(user_text("hi"))
    rid = h.start_response()
    out = h.audio(rid, silence(100), "Hi")
    assert "response.output_audio.delta" in types(out)
    assert not [e for e in effects(out) if isinstance(e, fx.PlayAudio)]
    assert h.session.playback is None


def test_started_and_stopped_follow_the_players_reports() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (200, "Hello"))
    started = h.session.on_playback_started(rid)
    assert [(e["type"], e["response_id"]) for e in events(started)] == [("output_audio_buffer.started", rid)]
    heard(h, rid, audio.item_id, 100)
    done = h.done(rid)
    assert fx.FinishPlayback(rid) in effects(done)
    assert "output_audio_buffer.stopped" not in types(done)  # it still plays
    heard(h, rid, audio.item_id, 100)
    stopped = h.session.on_playback_stopped(rid)
    assert [(e["type"], e["response_id"]) for e in events(stopped)] == [("output_audio_buffer.stopped", rid)]
    assert h.session.playback.head is None  # type: ignore[union-attr]


def test_barge_in_while_generating_truncates_after_response_done() -> None:
    h = call()
    rid = h.start_response()
    [first_audio, _] = play(h, rid, (500, "Hello "), (500, "world"))
    h.session.on_playback_started(rid)
    heard(h, rid, first_audio.item_id, 400.9)
    out = h.vad(0, [LOUD])
    assert types(out)[:2] == ["input_audio_buffer.speech_started", "output_audio_buffer.cleared"]
    assert types(out)[-3:] == ["response.done", "conversation.item.truncated", "rate_limits.updated"]
    assert first(out, "output_audio_buffer.cleared")["response_id"] == rid
    assert first(out, "response.done")["response"]["status"] == "cancelled"
    truncated = first(out, "conversation.item.truncated")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (first_audio.item_id, 400)  # rounded down
    assert cuts(out) == [
        fx.ClearOutputAudio(rid), fx.CancelResponse(rid)]  # no FinishPlayback: the audio was dropped
    assert retrieve(h, first_audio.item_id)["content"][0]["transcript"] == ""  # type: ignore[index]


def test_barge_in_after_generation_truncates_at_once() -> None:
    h = call()
    rid = h.start_response()
    [first_audio, _] = play(h, rid, (500, "Hello "), (500, "world"))
    h.done(rid)
    h.session.on_playback_started(rid)
    heard(h, rid, first_audio.item_id, 650.7)
    out = h.vad(0, [LOUD])
    assert_events(out, ["input_audio_buffer.speech_started", "output_audio_buffer.cleared",
                        "conversation.item.truncated"])
    assert first(out, "output_audio_buffer.cleared")["response_id"] == rid
    assert first(out, "conversation.item.truncated")["audio_end_ms"] == 650
    assert cuts(out) == [fx.ClearOutputAudio(rid)]
    assert retrieve(h, first_audio.item_id)["content"][0]["transcript"] == "Hello "  # type: ignore[index]
    # What the player reports after the cut belongs to nothing: no second cut.
    heard(h, rid, first_audio.item_id, 20)
    again = h.send({"type": "output_audio_buffer.clear"})
    assert_events(again, ["output_audio_buffer.cleared"])
    assert first(again, "output_audio_buffer.cleared")["response_id"] == ""


def test_audio_played_to_the_end_is_not_cut() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (300, "Hi"))
    h.done(rid)
    h.session.on_playback_started(rid)
    heard(h, rid, audio.item_id, 300)
    h.session.on_playback_stopped(rid)
    out = h.vad(0, [LOUD])
    assert_events(out, ["input_audio_buffer.speech_started"])
    assert cuts(out) == []


def test_played_out_but_not_yet_stopped_is_cleared_without_truncation() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (300, "Hi"))
    h.done(rid)
    heard(h, rid, audio.item_id, 300)  # the end marker has not been reached yet
    out = h.vad(0, [LOUD])
    assert_events(out, ["input_audio_buffer.speech_started", "output_audio_buffer.cleared"])


def test_interrupt_response_false_keeps_playing() -> None:
    h = call()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"interrupt_response": False}}}})
    rid = h.start_response()
    [audio] = play(h, rid, (500, "Hello"))
    h.done(rid)
    heard(h, rid, audio.item_id, 100)
    out = h.vad(0, [LOUD])
    assert_events(out, ["input_audio_buffer.speech_started"])
    assert cuts(out) == []


def test_client_clear_after_generation_truncates_at_once() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (500, "Hello"))
    h.done(rid)
    heard(h, rid, audio.item_id, 120)
    out = h.send({"type": "output_audio_buffer.clear", "event_id": "evt_clear"})
    assert_events(out, ["output_audio_buffer.cleared", "conversation.item.truncated"])
    assert first(out, "output_audio_buffer.cleared")["response_id"] == rid
    assert first(out, "conversation.item.truncated")["audio_end_ms"] == 120
    assert effects(out) == [fx.ClearOutputAudio(rid)]


def test_client_clear_with_nothing_playing() -> None:
    out = call().send({"type": "output_audio_buffer.clear"})
    assert_events(out, ["output_audio_buffer.cleared"])
    assert first(out, "output_audio_buffer.cleared")["response_id"] == ""
    assert effects(out) == []


def test_client_clear_during_generation_truncates_only_if_cancelled() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (500, "Hello"))
    heard(h, rid, audio.item_id, 200)
    out = h.send({"type": "output_audio_buffer.clear"})
    assert_events(out, ["output_audio_buffer.cleared"])
    assert effects(out) == [fx.ClearOutputAudio(rid)]
    out = h.send({"type": "response.cancel"})
    assert types(out)[-3:] == ["response.done", "conversation.item.truncated", "rate_limits.updated"]
    assert first(out, "conversation.item.truncated")["audio_end_ms"] == 200

    h2 = call()
    rid2 = h2.start_response()
    [audio2] = play(h2, rid2, (500, "Hello"))
    heard(h2, rid2, audio2.item_id, 200)
    h2.send({"type": "output_audio_buffer.clear"})
    play(h2, rid2, (100, " there"))  # the response goes on, and so does its audio
    done = h2.done(rid2)
    assert "conversation.item.truncated" not in types(done)
    assert fx.FinishPlayback(rid2) in effects(done)


def test_a_deleted_item_is_not_truncated() -> None:
    h = call()
    rid = h.start_response()
    [audio] = play(h, rid, (500, "Hello"))
    h.done(rid)
    heard(h, rid, audio.item_id, 100)
    h.send({"type": "conversation.item.delete", "item_id": audio.item_id})
    out = h.vad(0, [LOUD])
    assert_events(out, ["input_audio_buffer.speech_started", "output_audio_buffer.cleared"])


def test_a_key_press_becomes_one_event() -> None:
    h = call()
    out = h.session.on_dtmf("7", 1_700_000_123.9)
    assert out == [{"type": "input_audio_buffer.dtmf_event_received", "event": "7", "received_at": 1_700_000_123}]
    validate_server_event(out[0])  # type: ignore[arg-type]

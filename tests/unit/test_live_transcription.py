"""Live transcription mode in the core (SPEC §10.4): the reserved input item id, deltas
before the commit, and the small buffer/detector accessors incremental STT reads."""

from __future__ import annotations

from rtgate.core import effects as fx
from rtgate.core.input_audio import InputAudioBuffer

from .helpers import Harness, checked, effects, events, silence

LIVE = {
    "type": "realtime",
    "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}, "turn_detection": None}},
}


def live_harness() -> Harness:
    h = Harness()
    h.update(LIVE)
    return h


def test_live_mode_needs_a_live_model_and_no_turn_detection() -> None:
    """Live mode: a live transcription model with turn_detection null; otherwise turn mode."""
    h = Harness()
    assert not h.session.live_transcription
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}}}})
    assert not h.session.live_transcription  # server_vad still on: turn mode
    assert live_harness().session.live_transcription
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"},
                                                      "turn_detection": None}}})
    assert not h.session.live_transcription


def test_the_reserved_id_is_the_id_the_next_commit_uses() -> None:
    """Deltas streamed before the commit carry the item_id that the commit then uses."""
    h = live_harness()
    h.append(silence(200))
    reserved = h.session.reserve_input_item_id()
    assert h.session.reserve_input_item_id() == reserved
    delta = checked(h.session.on_transcription_delta(reserved, "Hello"))
    assert events(delta)[0]["type"] == "conversation.item.input_audio_transcription.delta"
    assert events(delta)[0]["item_id"] == reserved
    out = h.commit()
    committed = next(e for e in events(out) if e["type"] == "input_audio_buffer.committed")
    assert committed["item_id"] == reserved
    transcription = next(e for e in effects(out) if isinstance(e, fx.StartTranscription))
    assert transcription.item_id == reserved
    assert h.session.reserve_input_item_id() != reserved  # the next utterance gets a new id


def test_clearing_the_buffer_drops_the_reserved_id() -> None:
    h = live_harness()
    h.append(silence(200))
    reserved = h.session.reserve_input_item_id()
    h.send({"type": "input_audio_buffer.clear"})
    assert h.session.reserve_input_item_id() != reserved
    assert h.session.on_transcription_delta(reserved, "stale") == []


def test_turn_mode_publishes_no_delta_before_the_commit() -> None:
    """Turn mode: a delta for an item that is not committed yet is not published."""
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    reserved = h.session.reserve_input_item_id()
    assert h.session.on_transcription_delta(reserved, "early") == []


def test_peek_copies_a_range_without_consuming_it() -> None:
    buffer = InputAudioBuffer(max_ms=10_000)
    buffer.append(bytes(range(96)) * 10)  # 20 ms of PCM16 24 kHz
    assert buffer.peek(5, 10) == buffer.peek(5, 10) and len(buffer.peek(5, 10)) == 240
    assert len(buffer.peek(0)) == 960
    assert buffer.duration_ms == 20


def test_the_detector_exposes_the_true_end_of_speech() -> None:
    """``last_speech_end_ms`` is where the voice stopped, before the silence window ends."""
    h = Harness()
    h.append(silence(2000))
    h.vad(0, [0.0] * 10 + [0.9] * 20 + [0.0] * 3)
    assert h.session.detector is not None
    assert h.session.detector.last_speech_end_ms == 30 * 32

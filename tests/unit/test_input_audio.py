"""The input audio buffer: append, commit, clear (SPEC §3, §7, §9)."""

from __future__ import annotations

import pytest

from rtgate.core import effects as fx
from rtgate.protocol.client_events import DecodeLimits

from .helpers import (
    Harness,
    assert_error,
    assert_events,
    effects,
    events,
    silence,
)

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def test_append_emits_nothing() -> None:
    """SPEC §7: ``input_audio_buffer.append`` has no server answer."""
    h = Harness()
    assert h.append(silence(50)) == []
    assert h.session.buffer.duration_ms == pytest.approx(50)


def test_commit_below_100ms_is_commit_empty() -> None:
    """SPEC §9.1: a commit with < 100 ms is ``input_audio_buffer_commit_empty``, message as live."""
    h = Harness()
    h.append(silence(50))
    event = assert_error(h.commit(event_id="commit_10"), code="input_audio_buffer_commit_empty",
                         param=None, event_id="commit_10")
    assert event["error"]["message"] == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        "audio, but buffer only has 50.00ms of audio."
    )
    assert h.session.buffer.duration_ms == pytest.approx(50)


def test_commit_on_empty_buffer_reports_zero() -> None:
    """SPEC §9.1: the message states the buffered duration, here 0.00ms."""
    event = assert_error(Harness().commit(), code="input_audio_buffer_commit_empty", event_id=None)
    assert "buffer only has 0.00ms of audio" in event["error"]["message"]


def test_commit_creates_user_audio_item() -> None:
    """SPEC §10.2 steps 5-7: committed, then the user ``input_audio`` item added/done."""
    h = Harness()
    h.update(MANUAL)
    h.append(silence(60))
    h.append(silence(60))
    out = h.commit()
    assert_events(out, ["input_audio_buffer.committed", "conversation.item.added",
                        "conversation.item.done"])
    committed, added, done = events(out)
    item = added["item"]
    assert committed["item_id"] == item["id"] and committed["previous_item_id"] is None
    assert item == done["item"]
    assert item["role"] == "user" and item["status"] == "completed"
    assert item["content"] == [{"type": "input_audio", "transcript": None}]
    assert h.session.buffer.duration_ms == 0
    assert h.session.conversation.get(item["id"]).audio[0] == silence(120)
    assert effects(out) == []  # no transcription configured, no response (manual mode)


def test_commit_previous_item_id_is_last_item() -> None:
    """SPEC §10.5 step 6: ``committed.previous_item_id`` is the item before the new one."""
    h = Harness()
    h.create_item({"type": "message", "role": "user", "id": "first",
                   "content": [{"type": "input_text", "text": "hi"}]})
    h.append(silence(100))
    assert events(h.commit())[0]["previous_item_id"] == "first"


def test_commit_with_transcription_starts_transcription() -> None:
    """SPEC §10.2 step 7: with transcription on, the commit asks the transport to transcribe."""
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    h.append(silence(100))
    out = h.commit()
    (effect,) = effects(out)
    assert isinstance(effect, fx.StartTranscription)
    assert effect.item_id == events(out)[0]["item_id"]
    assert effect.audio == silence(100) and effect.audio_format == "audio/pcm"
    assert effect.options["model"] == "whisper-1"


def test_clear_empties_buffer() -> None:
    """SPEC §7: clear answers ``input_audio_buffer.cleared`` and drops the audio."""
    h = Harness()
    h.append(silence(200))
    assert_events(h.send({"type": "input_audio_buffer.clear"}), ["input_audio_buffer.cleared"])
    assert h.session.buffer.duration_ms == 0
    assert_error(h.commit(), code="input_audio_buffer_commit_empty")


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_g711_counts_8_bytes_per_ms(fmt: str) -> None:
    """SPEC §4.1: G.711 is 8 kHz, one byte a sample: 800 bytes are 100 ms."""
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"format": {"type": fmt},
                                                      "turn_detection": None}}})
    h.append(bytes(799))
    event = assert_error(h.commit(), code="input_audio_buffer_commit_empty")
    assert "99.88ms" in event["error"]["message"]
    h.append(bytes(1))
    assert_events(h.commit(), ["input_audio_buffer.committed", "conversation.item.added",
                               "conversation.item.done"])


def test_format_change_drops_buffered_audio() -> None:
    """Audio of the old format cannot be read as the new one, so a format change drops it."""
    h = Harness()
    h.append(silence(200))
    h.update({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert h.session.buffer.duration_ms == 0


def test_oversize_append_rejected() -> None:
    """Issue 2: an append over the size limit is an error; the session goes on."""
    h = Harness(decode_limits=DecodeLimits(max_append_bytes=1000))
    out = h.append(bytes(2000), event_id="big")
    assert_error(out, code="invalid_value", param="audio", event_id="big")
    assert h.session.buffer.duration_ms == 0
    assert h.append(bytes(960)) == []


def test_invalid_base64_append_rejected() -> None:
    """SPEC §3: ``audio`` must be base64; the error echoes the client's event_id."""
    h = Harness()
    out = h.send({"type": "input_audio_buffer.append", "audio": "abc$", "event_id": "a1"})
    assert_error(out, code="invalid_value", param="audio", event_id="a1")


def test_append_unknown_field_rejected() -> None:
    """SPEC §3: an unknown field on append is ``unknown_parameter``."""
    out = Harness().append(silence(10), event_id="a2", extra=1)
    assert_error(out, code="unknown_parameter", param="extra", event_id="a2")


def test_append_missing_audio_rejected() -> None:
    """SPEC §3: ``audio`` is required on append."""
    out = Harness().send({"type": "input_audio_buffer.append", "event_id": "a3"})
    assert_error(out, code="missing_required_parameter", param="audio", event_id="a3")


def test_buffer_keeps_at_most_max_ms() -> None:
    """Memory per session is bounded: the oldest uncommitted audio is dropped."""
    from rtgate.core.limits import CoreLimits

    h = Harness(limits=CoreLimits(max_input_buffer_ms=1000))
    for _ in range(15):
        h.append(silence(100))
    assert h.session.buffer.duration_ms == pytest.approx(1000)
    assert h.session.buffer.start_ms == pytest.approx(500)


def test_buffer_limit_follows_a_format_change() -> None:
    """After a switch to G.711 the limit is still ``max_ms`` of audio, not of PCM bytes."""
    from rtgate.core.input_audio import InputAudioBuffer

    buffer = InputAudioBuffer("audio/pcm", max_ms=1000)
    buffer.set_format("audio/pcmu")
    for _ in range(15):
        buffer.append(b"\xff" * 800)  # 100 ms at 8 bytes per ms
    assert buffer.duration_ms == pytest.approx(1000)

"""Turn detection over VAD probabilities, time injected (SPEC §4.1, §10.2, §10.5)."""

from __future__ import annotations

import pytest

from rtgate.core import effects as fx
from rtgate.core.turn_detection import SEMANTIC_SILENCE_MS

from .helpers import (
    T0,
    Harness,
    assert_events,
    effects,
    events,
    first,
    silence,
    start_effect,
    user_text,
)

QUIET, LOUD = 0.05, 0.9
TURN = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
]


def with_audio(ms: float = 2000, **kw: object) -> Harness:
    h = Harness(**kw)  # type: ignore[arg-type]
    h.append(silence(ms))
    return h


def test_speech_started_includes_prefix_padding() -> None:
    """SPEC §10.2 step 3: ``audio_start_ms`` = first speech frame − prefix_padding_ms."""
    h = with_audio()
    out = h.vad(0, [QUIET] * 20 + [LOUD])  # speech at 640 ms
    assert_events(out, ["input_audio_buffer.speech_started"])
    ev = events(out)[0]
    assert ev["audio_start_ms"] == 640 - 300
    assert ev["item_id"].startswith("item_")


def test_speech_started_floored_at_buffer_start() -> None:
    """SPEC §10.2: the padded start never reaches before the uncommitted buffer."""
    h = with_audio()
    assert events(h.vad(0, [QUIET, LOUD]))[0]["audio_start_ms"] == 0


def test_speech_started_floored_after_a_commit() -> None:
    """The floor is the start of the uncommitted audio, not the session's first byte."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    h.commit()  # buffer now starts at 2000 ms
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    h.append(silence(1000))
    assert events(h.vad(2000, [QUIET, LOUD]))[0]["audio_start_ms"] == 2000


def test_full_turn_with_create_response() -> None:
    """SPEC §10.2 steps 3-8: started, stopped after the silence window, committed, response."""
    h = with_audio()
    out = h.vad(0, [QUIET] * 10 + [LOUD] * 10 + [QUIET] * 10)
    assert_events(out, [*TURN, "response.created"])
    started, stopped, committed, added, _done, created = events(out)
    # Speech ends at 640 ms; 200 ms of silence is complete with the frame ending at 864 ms.
    assert stopped["audio_end_ms"] == 864
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == added["item"]["id"]
    assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert h.session.conversation.get(added["item"]["id"]).audio[0] == silence(864)
    assert created["response"]["status"] == "in_progress"
    plan = start_effect(out).plan
    assert plan.response_id == created["response"]["id"]
    assert [i.wire["id"] for i in plan.items] == [added["item"]["id"]]


def test_draft_plan_is_the_plan_the_commit_will_make() -> None:
    """``draft_plan`` (the LLM prefill hint) is pure and matches the commit's plan."""
    h = with_audio()
    h.update({"type": "realtime", "instructions": "Be brief.", "max_output_tokens": 50})
    started = events(h.vad(0, [QUIET] * 10 + [LOUD] * 10))[0]
    draft = h.session.draft_plan(started["item_id"])
    assert draft is not None and draft.response_id == "draft"
    assert h.vad(640, [LOUD]) == []  # nothing was emitted or consumed by the draft
    out = h.vad(672, [QUIET] * 10)
    real = start_effect(out).plan
    assert [i.wire["id"] for i in draft.items] == [i.wire["id"] for i in real.items]
    assert (draft.instructions, draft.max_output_tokens, draft.voice) == (
        real.instructions, real.max_output_tokens, real.voice)
    assert real.response_id.startswith("resp_")
    # While that response runs, or when no response would be created, there is no draft.
    assert h.session.draft_plan("item_next") is None
    quiet = with_audio()
    quiet.update({"type": "realtime", "audio": {"input": {"turn_detection": {"create_response": False}}}})
    assert quiet.session.draft_plan("item_x") is None
    manual = with_audio()
    manual.update({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert manual.session.draft_plan("item_x") is None


def test_silence_shorter_than_window_does_not_stop() -> None:
    """SPEC §4.1: speech stops only after ``silence_duration_ms`` of quiet."""
    h = with_audio()
    out = h.vad(0, [LOUD] * 5 + [QUIET] * 6 + [LOUD])  # 192 ms quiet < 200 ms
    assert_events(out, ["input_audio_buffer.speech_started"])


def test_create_response_false_commits_without_response() -> None:
    """SPEC §4.1: ``create_response: false`` commits the turn but starts no response."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"create_response": False}}}})
    out = h.vad(0, [LOUD] * 5 + [QUIET] * 10)
    assert_events(out, TURN)
    item_id = events(out)[0]["item_id"]
    # No response; only the utterance's bounds, for transcription while the user speaks.
    assert effects(out) == [fx.UtteranceStarted(item_id, 0.0), fx.UtteranceStopped(item_id, 160.0)]


def test_no_new_response_while_one_is_active() -> None:
    """SPEC §6: a VAD turn while a response runs does not start a second one."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"interrupt_response": False}}}})
    rid = h.start_response()
    out = h.vad(0, [LOUD] * 5 + [QUIET] * 10)
    assert_events(out, TURN)
    assert h.session.active_response_id == rid


def test_interrupt_response_cancels_active_response() -> None:
    """SPEC §10.5: speech during a response cancels it with reason ``turn_detected``."""
    h = with_audio()
    h.create_item(user_text("hi"))
    rid = h.start_response()
    h.text(rid, "Hello ", "there")
    out = h.vad(0, [LOUD])
    assert_events(out, [
        "input_audio_buffer.speech_started",
        "response.output_text.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ])
    assert fx.CancelResponse(rid) in effects(out)
    response = first(out, "response.done")["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"] == [{"type": "output_text", "text": "Hello there"}]
    assert first(out, "conversation.item.done")["item"]["status"] == "incomplete"
    assert h.session.active_response_id is None


def test_interrupt_response_false_keeps_response() -> None:
    """SPEC §4.1: with ``interrupt_response: false`` speech does not cancel."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"interrupt_response": False}}}})
    rid = h.start_response()
    assert_events(h.vad(0, [LOUD]), ["input_audio_buffer.speech_started"])
    assert h.session.active_response_id == rid


def test_turn_detection_null_ignores_vad() -> None:
    """SPEC §4.1: ``turn_detection: null`` means manual commits; VAD results do nothing."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert h.vad(0, [LOUD] * 5 + [QUIET] * 20) == []
    assert len(h.session.conversation) == 0


def test_threshold_update_applies_to_detector() -> None:
    """SPEC §4.1: a new ``threshold`` takes effect at once."""
    h = with_audio()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"threshold": 0.95}}}})
    assert h.vad(0, [LOUD] * 5) == []


@pytest.mark.parametrize("eagerness", ["low", "medium", "high", "auto"])
def test_semantic_vad_eagerness_maps_to_silence_window(eagerness: str) -> None:
    """SPEC §4.1 ``semantic_vad``: eagerness maps to a documented silence window."""
    h = with_audio(4000)
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": eagerness, "create_response": False}}}})
    window = SEMANTIC_SILENCE_MS[eagerness]
    quiet_frames = -(-window // 32)  # frames until the window is complete
    assert_events(h.vad(0, [LOUD] * 3 + [QUIET] * (quiet_frames - 1)),
                  ["input_audio_buffer.speech_started"])
    out = h.vad(96 + 32 * (quiet_frames - 1), [QUIET])
    assert_events(out, TURN[1:])
    assert events(out)[0]["audio_end_ms"] == 96 + 32 * quiet_frames
    assert SEMANTIC_SILENCE_MS["high"] < SEMANTIC_SILENCE_MS["medium"] < SEMANTIC_SILENCE_MS["low"]


def test_transcription_session_vad_transcribes_without_response() -> None:
    """SPEC §10.4: a transcription session commits turns and transcribes; no ``response.*``."""
    h = Harness(kind="transcription")
    h.append(silence(2000))
    out = h.vad(0, [LOUD] * 5 + [QUIET] * 10)
    assert_events(out, TURN)
    (effect,) = [e for e in effects(out) if not isinstance(e, fx.UtteranceStarted | fx.UtteranceStopped)]
    assert isinstance(effect, fx.StartTranscription)
    assert effect.item_id == events(out)[0]["item_id"]


def idle_harness() -> Harness:
    h = with_audio(500)
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"idle_timeout_ms": 5000}}}})
    return h


def test_idle_timeout_triggers_commit_and_response() -> None:
    """SPEC §8: ``idle_timeout_ms`` after the last response → timeout_triggered, commit, response."""
    h = idle_harness()
    rid = h.start_response()
    h.text(rid, "Anything else?")
    h.done(rid)
    assert h.session.next_deadline() == pytest.approx(T0 + 5)
    assert h.tick(T0 + 4.9) == []
    out = h.tick(T0 + 5.0)
    assert_events(out, [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ])
    timeout = events(out)[0]
    assert (timeout["audio_start_ms"], timeout["audio_end_ms"]) == (0, 500)
    assert timeout["item_id"] == events(out)[1]["item_id"]
    start_effect(out)
    assert h.tick(T0 + 20) == []  # fires once


def test_idle_timeout_counts_audio_playback() -> None:
    """SPEC §8: the idle timer starts after the response's audio would have played."""
    h = idle_harness()
    rid = h.start_response()
    h.audio(rid, silence(2000), "Hi")
    h.done(rid)
    assert h.tick(T0 + 6.9) == []
    assert_events(h.tick(T0 + 7.0)[:1], ["input_audio_buffer.timeout_triggered"])


def test_speech_disarms_idle_timeout() -> None:
    """SPEC §8: speech before the timeout cancels it."""
    h = idle_harness()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"create_response": False}}}})
    rid = h.start_response()
    h.done(rid)
    h.vad(0, [LOUD])
    assert h.tick(T0 + 10) == []


def test_barge_in_during_audio_follows_spec_10_5() -> None:
    """SPEC §10.5 steps 1-4: audio parts close, the item is ``incomplete``, reason turn_detected."""
    h = with_audio()
    rid = h.start_response()
    h.audio(rid, silence(200), "Let me tell you")
    out = h.vad(0, [LOUD])
    assert_events(out, [
        "input_audio_buffer.speech_started",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ])
    assert first(out, "response.output_audio_transcript.done")["transcript"] == "Let me tell you"
    assert first(out, "conversation.item.done")["item"]["status"] == "incomplete"
    response = first(out, "response.done")["response"]
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    # Step 5: the client truncates to what was played; step 6: the user turn follows A.
    item_id = response["output"][0]["id"]
    assert_events(h.send({"type": "conversation.item.truncate", "item_id": item_id,
                          "content_index": 0, "audio_end_ms": 100}),
                  ["conversation.item.truncated"])
    out = h.vad(32, [QUIET] * 10)
    assert events(out)[1]["previous_item_id"] == item_id

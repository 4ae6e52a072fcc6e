"""Session fields rtgate cannot honour are refused clearly (docs/fields.md): saved prompts,
custom voices the profile's TTS does not have."""

from __future__ import annotations

from .helpers import Harness, assert_error, assert_events, user_text


def test_saved_prompt_is_refused_in_session_and_response() -> None:
    h = Harness()
    out = h.update({"type": "realtime", "prompt": {"id": "pmpt_123"}}, event_id="evt_p")
    error = assert_error(out, code="invalid_value", param="session.prompt.id", event_id="evt_p")
    assert "no prompt store" in error["error"]["message"]
    assert h.session.config.prompt is None  # nothing applied
    h.create_item(user_text("hi"))
    out = h.create_response({"prompt": {"id": "pmpt_123"}})
    assert_error(out, code="invalid_value", param="response.prompt.id")


def test_custom_voice_must_be_configured() -> None:
    """{"id": ...} names a voice of the profile's TTS (a Piper voice file), or is refused."""
    h = Harness()
    out = h.update({"type": "realtime", "audio": {"output": {"voice": {"id": "voice_abc"}}}})
    error = assert_error(out, code="invalid_value", param="session.audio.output.voice.id")
    assert "here: none" in error["error"]["message"]
    h.session.custom_voices = frozenset({"en_US-joe-medium"})
    out = h.update({"type": "realtime", "audio": {"output": {"voice": {"id": "en_US-joe-medium"}}}})
    assert_events(out, ["session.updated"])
    assert out[0]["session"]["audio"]["output"]["voice"] == {"id": "en_US-joe-medium"}  # type: ignore[index]
    assert_events(h.update({"type": "realtime", "instructions": "Hi."}), ["session.updated"])


def test_reasoning_effort_reaches_the_request() -> None:
    """reasoning.effort of the session, or of the response, travels to the LLM request."""
    from rtgate.pipeline.context import build_request

    from .helpers import start_effect

    h = Harness()
    h.update({"type": "realtime", "reasoning": {"effort": "low"}})
    h.create_item(user_text("hi"))
    plan = start_effect(h.create_response()).plan
    assert build_request(plan).reasoning_effort == "low"
    h.session.on_response_done(plan.response_id, h.now)
    plan = start_effect(h.create_response({"reasoning": {"effort": "high"}})).plan
    assert build_request(plan).reasoning_effort == "high"


def test_include_logprobs_asks_the_stt_and_reaches_the_event() -> None:
    """include item.input_audio_transcription.logprobs: the transcription effect asks for
    log-probabilities and the completed event carries them as LogProbProperties."""
    from rtgate.core import effects as fx

    from .helpers import checked, effects, first, silence

    h = Harness()
    h.update({"type": "realtime", "include": ["item.input_audio_transcription.logprobs"], "audio": {"input": {
        "turn_detection": None, "transcription": {"model": "whisper-1"}}}})
    h.append(silence(200))
    start = next(e for e in effects(h.commit()) if isinstance(e, fx.StartTranscription))
    assert start.options["logprobs"] is True
    out = checked(h.session.on_transcription_completed(start.item_id, "hi there", 0.2,
                                                       [("hi", -0.1), (" there", -0.5)]))
    done = first(out, "conversation.item.input_audio_transcription.completed")
    assert done["logprobs"] == [{"token": "hi", "bytes": [104, 105], "logprob": -0.1},
                                {"token": " there", "bytes": list(b" there"), "logprob": -0.5}]

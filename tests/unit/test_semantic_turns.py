"""``semantic_vad`` with a turn-end model: the core's decisions, verdicts injected.

The core asks (effect ``PredictTurnEnd``) when the VAD hears a short pause, and ends the
turn when the verdict reaches the eagerness's threshold; the silence window is the longest
wait. Verdicts are plain numbers here (no model), the audio clock is the frames fed.
"""

from __future__ import annotations

import pytest

from rtgate.core import effects as fx
from rtgate.core.session import Output
from rtgate.core.turn_detection import SEMANTIC_SILENCE_MS, SEMANTIC_TURN_END

from .helpers import Harness, assert_events, checked, effects, events, silence

QUIET, LOUD = 0.05, 0.9
FRAME = 32
TURN_END = [
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
]


def semantic(eagerness: str = "medium", *, model: bool = True, audio_ms: float = 12_000,
             create_response: bool = False) -> Harness:
    h = Harness()
    if model:
        h.session.enable_turn_model()
    h.append(silence(audio_ms))
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": eagerness, "create_response": create_response}}}})
    return h


def queries(out: list[Output]) -> list[fx.PredictTurnEnd]:
    return [e for e in effects(out) if isinstance(e, fx.PredictTurnEnd)]


def pause_frames(eagerness: str = "medium") -> int:
    return -(-SEMANTIC_TURN_END[eagerness].pause_ms // FRAME)


def speak_then_pause(h: Harness, eagerness: str = "medium", speech: int = 10) -> fx.PredictTurnEnd:
    """Speech frames from 0 ms, then quiet until the detector asks; returns the query."""
    out = h.vad(0, [LOUD] * speech + [QUIET] * pause_frames(eagerness))
    assert_events(out, ["input_audio_buffer.speech_started"])
    (query,) = queries(out)
    return query


def verdict(h: Harness, query: fx.PredictTurnEnd, probability: float) -> list[Output]:
    return checked(h.session.on_turn_end(query.query_id, probability, h.now))


def test_short_pause_asks_the_model_with_the_turn_audio() -> None:
    """A pause of ``pause_ms`` asks once; the query carries the turn so far (prefix included)."""
    h = semantic()
    query = speak_then_pause(h)
    assert query.audio_format == "audio/pcm"
    end = 10 * FRAME + pause_frames() * FRAME
    assert query.audio == silence(end)  # speech from 0 ms: the prefix is floored at 0
    assert queries(h.vad(end, [QUIET] * 5)) == []  # one query per pause


def test_complete_verdict_ends_the_turn_at_once() -> None:
    """A verdict at or above the threshold ends the turn (GA events) at the last frame heard."""
    h = semantic()
    query = speak_then_pause(h)
    out = verdict(h, query, SEMANTIC_TURN_END["medium"].threshold)
    assert_events(out, TURN_END)
    stopped, committed = events(out)[:2]
    assert stopped["audio_end_ms"] == 10 * FRAME + pause_frames() * FRAME
    assert committed["item_id"] == stopped["item_id"]


def test_complete_verdict_creates_the_response() -> None:
    """With ``create_response`` the turn's end starts a response, as the silence window does."""
    h = semantic(create_response=True)
    out = verdict(h, speak_then_pause(h), 0.99)
    assert_events(out, [*TURN_END, "response.created"])
    assert any(isinstance(e, fx.StartResponse) for e in effects(out))


def test_incomplete_verdict_waits_for_the_longest_wait() -> None:
    """Below the threshold nothing happens; the turn ends after ``max_wait_ms`` of quiet."""
    h = semantic()
    query = speak_then_pause(h)
    assert verdict(h, query, 0.1) == []
    wait = SEMANTIC_TURN_END["medium"].max_wait_ms
    heard = pause_frames() * FRAME
    left = -(-(wait - heard) // FRAME)
    assert_events(h.vad(320 + heard, [QUIET] * (left - 1)), [])
    out = h.vad(320 + heard + (left - 1) * FRAME, [QUIET])
    assert_events(out, TURN_END)
    assert events(out)[0]["audio_end_ms"] == 320 + heard + left * FRAME


def test_speech_after_the_pause_voids_the_verdict() -> None:
    """The user went on before the verdict came: it is ignored; the next pause asks again."""
    h = semantic()
    first = speak_then_pause(h)
    at = 10 * FRAME + pause_frames() * FRAME
    out = h.vad(at, [LOUD] * 5 + [QUIET] * pause_frames())
    (second,) = queries(out)
    assert second.query_id != first.query_id
    assert verdict(h, first, 0.99) == []
    assert_events(verdict(h, second, 0.99), TURN_END)


def test_verdict_after_a_manual_commit_is_ignored() -> None:
    """A commit or clear ends the turn; a late verdict does not end another one."""
    h = semantic()
    query = speak_then_pause(h)
    h.send({"type": "input_audio_buffer.clear"})
    assert verdict(h, query, 0.99) == []


def test_query_audio_is_at_most_the_models_window() -> None:
    """The model reads 8 s; a longer turn sends only its last 8 s."""
    h = semantic(audio_ms=20_000)
    out = h.vad(0, [LOUD] * 300 + [QUIET] * pause_frames())  # 9.6 s of speech
    (query,) = queries(out)
    assert len(query.audio) == len(silence(8000))


def test_server_vad_never_asks_the_model() -> None:
    """``server_vad`` keeps its silence window even when a turn-end model is available."""
    h = Harness()
    h.session.enable_turn_model()
    h.append(silence(2000))
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": False}}}})
    out = h.vad(0, [LOUD] * 10 + [QUIET] * 10)
    assert queries(out) == []
    assert_events(out, ["input_audio_buffer.speech_started", *TURN_END])


def test_without_a_model_semantic_vad_keeps_its_silence_window() -> None:
    """No model installed: no queries, the documented silence window ends the turn."""
    h = semantic(model=False)
    window = SEMANTIC_SILENCE_MS["medium"]
    out = h.vad(0, [LOUD] * 10 + [QUIET] * (window // FRAME + 1))
    assert queries(out) == []
    assert_events(out, ["input_audio_buffer.speech_started", *TURN_END])


@pytest.mark.parametrize("eagerness", ["low", "medium", "high", "auto"])
def test_eagerness_sets_the_threshold(eagerness: str) -> None:
    """Just below the eagerness's threshold waits; at the threshold the turn ends."""
    threshold = SEMANTIC_TURN_END[eagerness].threshold
    h = semantic(eagerness)
    assert verdict(h, speak_then_pause(h, eagerness), threshold - 0.01) == []
    h = semantic(eagerness)
    assert_events(verdict(h, speak_then_pause(h, eagerness), threshold), TURN_END)


def test_eagerness_orders_thresholds_and_waits() -> None:
    """Higher eagerness: a lower bar and a shorter longest wait; auto is medium."""
    low, medium, high = (SEMANTIC_TURN_END[e] for e in ("low", "medium", "high"))
    assert high.threshold < medium.threshold < low.threshold
    assert high.max_wait_ms < medium.max_wait_ms < low.max_wait_ms
    assert SEMANTIC_TURN_END["auto"] == medium

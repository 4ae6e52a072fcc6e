"""Admission control (server/admission.py): conversations count, listeners do not, a
scheduler running late refuses new sessions, and every refusal is counted. Pure."""

from __future__ import annotations

import math

from rtgate.pipeline.engines.llama_slots import PromptTokens
from rtgate.pipeline.responder import Pipeline
from rtgate.pipeline.scheduler import Scheduler
from rtgate.server.admission import Admission, auto_conversations
from rtgate.server.metrics import Metrics, prompt_token_lines
from rtgate.testing.fakes import FakeLLM, FakeTTS

from .helpers import Harness, silence


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admission(limit: int, clock: Clock | None = None, late_s: float = math.inf) -> tuple[Admission, Metrics]:
    scheduler = Scheduler(clock=clock or Clock())
    metrics = Metrics(scheduler)
    return Admission(scheduler, max_conversations=limit, overload_late_s=late_s,
                     refused=metrics.sessions_refused), metrics


def talker() -> Harness:
    """A session with the default configuration (it answers) that has begun streaming."""
    h = Harness()
    h.append(silence(100))
    return h


def listener() -> Harness:
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": False}}}})
    return h


def test_conversations_up_to_the_limit_are_admitted_then_refused() -> None:
    gate, metrics = admission(2)
    for _ in range(2):
        assert gate.refusal() is None
        gate.opened(talker().session)
    refusal = gate.refusal()
    assert refusal is not None
    assert (refusal.type, refusal.code) == ("server_error", "server_busy")
    assert "2 conversations" in refusal.message
    assert 'rtgate_sessions_refused_total{reason="capacity"} 1' in metrics.registry.render()


def test_a_session_that_has_not_started_does_not_count_yet() -> None:
    """Just connected, a listener still has the default (answering) configuration."""
    gate, _ = admission(1)
    h = Harness()
    gate.opened(h.session)
    assert gate.refusal() is None
    h.append(silence(100))
    assert gate.refusal() is not None


def test_a_closed_conversation_frees_its_place() -> None:
    gate, _ = admission(1)
    h = talker()
    gate.opened(h.session)
    assert gate.refusal() is not None
    gate.closed(h.session)
    assert gate.refusal() is None


def test_sessions_that_only_listen_for_turns_do_not_count() -> None:
    gate, _ = admission(1)
    for _ in range(50):
        h = listener()
        h.append(silence(100))
        gate.opened(h.session)
    assert gate.conversations() == 0
    assert gate.refusal() is None


def test_a_listener_that_asks_for_transcription_counts_again() -> None:
    gate, _ = admission(1)
    h = listener()
    h.append(silence(100))
    gate.opened(h.session)
    h.update({"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    assert gate.conversations() == 1
    assert gate.refusal() is not None


def test_a_late_scheduler_refuses_new_sessions() -> None:
    clock = Clock()
    gate, metrics = admission(100, clock, late_s=1.0)
    lane = gate.scheduler.lane("llm", 1)
    running = lane.rules.request(due=0.0, now=0.0)
    lane.rules.request(due=0.0, now=0.0)  # a first answer waits behind it
    clock.now = 0.5
    assert gate.refusal() is None
    clock.now = 2.0
    refusal = gate.refusal()
    assert refusal is not None and "overloaded" in refusal.message
    assert 'rtgate_sessions_refused_total{reason="overloaded"} 1' in metrics.registry.render()
    lane.rules.release(running, now=2.0)  # granted 2 s late: still counts for the window
    assert gate.refusal() is not None
    clock.now = 30.0
    assert gate.refusal() is None


def test_auto_allows_four_conversations_per_core() -> None:
    assert auto_conversations(2) == 8
    assert auto_conversations(1) == 4


def test_scheduler_lanes_are_exported_on_metrics() -> None:
    clock = Clock()
    gate, metrics = admission(1, clock)
    lane = gate.scheduler.lane("stt:tiny", 1)
    lane.rules.request(due=0.0, now=0.0)
    lane.rules.request(due=0.0, now=0.0)
    clock.now = 0.25
    text = metrics.registry.render()
    assert 'rtgate_scheduler_granted_total{lane="stt:tiny"} 1' in text
    assert 'rtgate_scheduler_waiting{lane="stt:tiny"} 1' in text
    assert 'rtgate_scheduler_pressure_seconds{lane="stt:tiny"} 0.25' in text


def test_scheduler_work_is_exported_by_kind_of_job() -> None:
    clock = Clock()
    gate, metrics = admission(1, clock)
    lane = gate.scheduler.lane("cores", 1)
    answer = lane.rules.request(due=0.0, now=0.0, work="answer")
    lane.rules.request(due=0.0, now=0.0, work="transcribe")  # waits 0.5 s behind the answer
    lane.rules.release(answer, now=0.5)
    text = metrics.registry.render()
    assert 'rtgate_scheduler_work_runs_total{lane="cores",work="answer"} 1' in text
    assert 'rtgate_scheduler_work_busy_seconds_total{lane="cores",work="answer"} 0.5' in text
    assert 'rtgate_scheduler_work_wait_seconds_total{lane="cores",work="transcribe"} 0.5' in text
    assert 'rtgate_scheduler_work_late_seconds_total{lane="cores",work="transcribe"} 0.5' in text


def test_llm_prompt_tokens_are_exported_by_whether_the_cache_held_them() -> None:
    tokens = PromptTokens()
    tokens.count({"prompt_n": 14, "cache_n": 42, "predicted_n": 1})
    tokens.count({"prompt_n": 3, "cache_n": 60})
    lines = prompt_token_lines(tokens)
    assert 'rtgate_llm_prompt_tokens_total{cached="true"} 102' in lines
    assert 'rtgate_llm_prompt_tokens_total{cached="false"} 17' in lines
    assert "# TYPE rtgate_llm_prompt_tokens_total counter" in lines


class _LocalTTS(FakeTTS):
    runs_locally = True


def test_only_profiles_running_models_on_this_machine_are_limited() -> None:
    """Network backends and the fakes do no local model work; one local stage is enough."""
    assert not Pipeline("network", FakeLLM(), FakeTTS()).admission_limited
    assert Pipeline("mixed", FakeLLM(), _LocalTTS()).admission_limited
    assert Pipeline("forced", FakeLLM(), FakeTTS(), admission_limited=True).admission_limited


def test_a_late_network_backend_does_not_refuse_local_sessions() -> None:
    """Admission measures this machine's models; a network backend bounds itself."""
    clock = Clock()
    gate, _ = admission(100, clock, late_s=1.0)
    remote = gate.scheduler.lane("openai-chat:example/chat", 1, local=False)
    remote.rules.request(due=0.0, now=0.0)
    remote.rules.request(due=0.0, now=0.0)
    clock.now = 5.0
    assert gate.refusal() is None

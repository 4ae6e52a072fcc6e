"""Session teardown is bounded and frees the session's slot exactly once (issue 17, defect 1).

A client that vanished mid-answer used to leave its session running for ever: the spoken
response's LLM producer, cancelled while the queue to the TTS was full, waited on that
queue for ever, so ``SessionRunner.stop`` never returned and the session was never freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rtgate.core.effects import ResponsePlan
from rtgate.core.limits import CoreLimits
from rtgate.core.session import Session
from rtgate.pipeline.base import LLM, LLMChunk, LLMRequest, TextDelta
from rtgate.pipeline.builtin import ToneTTS
from rtgate.pipeline.responder import Pipeline
from rtgate.protocol.client_events import DecodeLimits
from rtgate.server.slots import SessionSlot
from rtgate.transport.connection import SessionRunner


class GatedLLM(LLM):
    """Waits for ``gate``, then streams ``count`` short sentences without pause.

    Opened in the same loop step as the consumer is cancelled, the producer runs first
    and fills the sentence queue: the consumer is cancelled with the queue full — the
    moment a client vanishes while an answer is being generated faster than it is sent.
    """

    name = "gated"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.started.set()
        await self.gate.wait()
        for n in range(self.count):
            yield TextDelta(f"Sentence {n}. ")


class StubbornLLM(LLM):
    """Ignores every cancellation until ``release`` is set: a badly written engine."""

    name = "stubborn"

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.started.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue
        yield TextDelta("late")


def _plan() -> ResponsePlan:
    return ResponsePlan(
        response_id="resp_1", instructions="", items=[], output_modalities=["audio"],
        voice="alloy", speed=1.0, output_format={"type": "audio/pcm", "rate": 24000},
        tools=[], tool_choice="auto", max_output_tokens=None, conversation=True,
    )


class NullChannel:
    async def send_text(self, text: str) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


def _runner(pipeline: Pipeline) -> SessionRunner:
    session = Session(session_id="sess_t", kind="realtime", model="gpt-realtime", config=None,
                      limits=CoreLimits(), now=0.0)
    return SessionRunner(session, NullChannel(), pipeline, vad=None, clock=lambda: 0.0,
                         decode_limits=DecodeLimits(), queue_events=64, send_deadline_s=1.0)


async def test_cancelling_a_spoken_response_with_a_full_sentence_queue_ends_it() -> None:
    """The consumer of a spoken answer is cancelled while the LLM's sentence queue is full:
    the answer's producer task ends too (it used to wait on the full queue for ever)."""
    llm = GatedLLM(count=50)
    pipeline = Pipeline("t", llm, ToneTTS(), incremental_stt=False, prefill=False)

    async def consume() -> None:
        async for _ in pipeline.respond(_plan()):
            pass

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await llm.started.wait()
    before = asyncio.all_tasks() - {asyncio.current_task(), consumer}
    llm.gate.set()
    consumer.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(consumer, return_exceptions=True)
    producers = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
    if producers:
        async with asyncio.timeout(5):
            await asyncio.wait(producers)


async def test_stop_returns_within_its_bound_when_a_task_ignores_cancellation() -> None:
    """``SessionRunner.stop`` ends after ``timeout_s`` whatever its tasks do, and returns
    the tasks still running."""
    llm = StubbornLLM()
    runner = _runner(Pipeline("t", llm, None, incremental_stt=False, prefill=False))
    await runner.start()
    runner.handle_text('{"type":"response.create","response":{"output_modalities":["text"]}}')
    async with asyncio.timeout(5):
        await llm.started.wait()
    async with asyncio.timeout(5):
        stragglers = await runner.stop(timeout_s=0.05)
    assert [t.get_name() for t in stragglers] == ["sess_t:response:" + t.get_name().split(":")[-1]
                                                  for t in stragglers]
    assert len(stragglers) == 1
    llm.release.set()
    await asyncio.wait(stragglers)


async def test_stop_ends_every_task_of_a_session_whose_client_vanished_mid_answer() -> None:
    """A long spoken answer is being generated when the session ends: ``stop`` leaves no
    task behind."""
    llm = GatedLLM(count=500)
    runner = _runner(Pipeline("t", llm, ToneTTS(), incremental_stt=False, prefill=False))
    await runner.start()
    runner.handle_text('{"type":"response.create"}')
    async with asyncio.timeout(5):
        await llm.started.wait()
    llm.gate.set()
    async with asyncio.timeout(5):
        assert await runner.stop(timeout_s=5.0) == set()
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


class Counter:
    active_sessions = 0


async def test_a_slot_is_released_exactly_once_when_the_last_straggler_ends() -> None:
    state = Counter()
    slot = SessionSlot(state)
    gate = asyncio.Event()
    straggler = asyncio.create_task(gate.wait())
    slot.release_when_done({straggler})
    assert state.active_sessions == 1  # the session still holds its slot
    gate.set()
    await straggler
    await asyncio.sleep(0)  # done callbacks run one loop step after the task ends
    assert state.active_sessions == 0 and not slot.held
    slot.release()
    slot.release_when_done(set())
    assert state.active_sessions == 0


async def test_a_slot_with_nothing_running_is_released_at_once() -> None:
    state = Counter()
    slot = SessionSlot(state)
    slot.release_when_done(set())
    assert state.active_sessions == 0

"""The scheduler's order: earliest deadline first, speculation on spare capacity only,
yield requests to the least urgent run (pipeline/scheduler.py), and answer pacing
(pipeline/pacing.py). An injected clock, no sleeps — except the two pacing-deadline tests
at the end, which wait a fraction of a second of real playback time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rtgate.pipeline.base import LLM, BackendTimeout, Deadlines, LLMChunk, LLMRequest, TextDelta
from rtgate.pipeline.pacing import PacingLimits, Playback
from rtgate.pipeline.scheduler import CORES, SPECULATIVE, Lane, LaneRules, Scheduler


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- rules


def test_a_free_lane_grants_at_once() -> None:
    rules = LaneRules(capacity=2)
    a = rules.request(due=5.0, now=1.0)
    b = rules.request(due=9.0, now=1.0)
    assert a.granted_at == 1.0 and b.granted_at == 1.0
    assert rules.stats.waited == 0


def test_waiters_are_granted_earliest_due_first_ties_in_arrival_order() -> None:
    rules = LaneRules(capacity=1)
    running = rules.request(due=0.0, now=0.0)
    late = rules.request(due=30.0, now=1.0)
    urgent = rules.request(due=2.0, now=2.0)
    urgent_too = rules.request(due=2.0, now=3.0)
    assert rules.waiting == 3
    assert rules.release(running, now=4.0) == [urgent]
    assert rules.release(urgent, now=5.0) == [urgent_too]
    assert rules.release(urgent_too, now=6.0) == [late]
    assert rules.stats.waited == 3
    # Late from max(due, requested): the second urgent job asked at 3.0, after its due time.
    assert rules.stats.late_s == pytest.approx((4.0 - 2.0) + (5.0 - 3.0))


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    rules = LaneRules(capacity=1)
    running = rules.request(due=0.0, now=0.0)
    gone = rules.request(due=1.0, now=0.0)
    stays = rules.request(due=2.0, now=0.0)
    assert rules.release(gone, now=0.5) == []
    assert rules.waiting == 1
    assert rules.release(running, now=1.0) == [stays]
    assert rules.waiting == 0


def test_speculation_runs_only_on_spare_capacity() -> None:
    rules = LaneRules(capacity=2)
    spec = rules.speculate(now=0.0)
    assert spec is not None and spec.speculative and spec.due == SPECULATIVE
    real = rules.request(due=1.0, now=0.0)
    assert real.granted_at == 0.0
    assert rules.speculate(now=0.0) is None  # full
    assert rules.stats.speculated == 1 and rules.stats.speculation_refused == 1


def test_speculation_leaves_the_reserved_runs_to_due_work() -> None:
    """A turn that ends while speculation runs starts at once: speculation never takes
    the lane's reserved run, even when that run is free."""
    rules = LaneRules(capacity=2, reserve=1)
    spec = rules.speculate(now=0.0)
    assert spec is not None
    assert rules.speculate(now=0.0) is None  # the last free run is kept back
    turn = rules.request(due=1.0, now=1.0)
    assert turn.granted_at == 1.0 and rules.waiting == 0
    assert rules.stats.speculated == 1 and rules.stats.speculation_refused == 1


def test_a_lane_keeps_back_fewer_runs_than_it_has() -> None:
    with pytest.raises(ValueError):
        LaneRules(capacity=1, reserve=1)
    with pytest.raises(ValueError):
        LaneRules(capacity=2, reserve=-1)


def test_the_cores_lane_has_a_run_per_usable_core() -> None:
    """Whisper and llama.cpp share it; with more than one core one run stays with due work."""
    from rtgate.pipeline.base import usable_cores

    lane = Scheduler(clock=Clock()).cores()
    assert lane.name == CORES and lane.capacity == usable_cores()
    assert lane.rules.reserve == (1 if usable_cores() > 1 else 0)


def test_speculation_never_jumps_the_queue() -> None:
    rules = LaneRules(capacity=2)
    a = rules.request(due=0.0, now=0.0)
    rules.request(due=0.0, now=0.0)
    waiter = rules.request(due=1.0, now=0.0)
    assert rules.release(a, now=1.0) == [waiter]
    assert rules.speculate(now=1.0) is None


def test_a_waiter_asks_the_least_urgent_run_to_yield() -> None:
    rules = LaneRules(capacity=2)
    soon = rules.request(due=10.0, now=0.0)
    later = rules.request(due=50.0, now=0.0)
    rules.request(due=1.0, now=1.0)
    assert later.yield_requested and not soon.yield_requested
    assert rules.stats.yield_requests == 1


def test_speculation_yields_first() -> None:
    rules = LaneRules(capacity=2)
    real = rules.request(due=50.0, now=0.0)
    spec = rules.speculate(now=0.0)
    assert spec is not None
    rules.request(due=60.0, now=1.0)  # later than the real run, earlier than speculation
    assert spec.yield_requested and not real.yield_requested


def test_no_yield_for_a_waiter_that_is_not_more_urgent() -> None:
    rules = LaneRules(capacity=1)
    running = rules.request(due=1.0, now=0.0)
    rules.request(due=5.0, now=0.0)
    assert not running.yield_requested


def test_one_yield_request_per_urgent_waiter() -> None:
    rules = LaneRules(capacity=2)
    a = rules.request(due=40.0, now=0.0)
    b = rules.request(due=50.0, now=0.0)
    rules.request(due=1.0, now=1.0)
    rules.request(due=1.0, now=1.0)  # queued behind the first: the second run yields too
    rules.request(due=1.0, now=1.0)  # no third run to ask
    assert a.yield_requested and b.yield_requested
    assert rules.stats.yield_requests == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LaneRules(capacity=0)


# --------------------------------------------------------------------------- asyncio lane


async def test_lane_hands_runs_over_in_due_order() -> None:
    clock = Clock()
    lane = Lane("test", 1, clock=clock)
    order: list[str] = []
    first = lane.hold(due=0.0)
    await first.__aenter__()

    async def job(name: str, due: float) -> None:
        async with lane.hold(due):
            order.append(name)

    tasks = [asyncio.create_task(job("late", 9.0)), asyncio.create_task(job("urgent", 1.0))]
    await asyncio.sleep(0)  # one loop turn: both tasks run up to their wait
    assert lane.rules.waiting == 2
    await first.__aexit__(None, None, None)
    await asyncio.gather(*tasks)
    assert order == ["urgent", "late"]
    assert not lane.rules.running


async def test_a_cancelled_waiter_passes_its_grant_on() -> None:
    lane = Lane("test", 1, clock=Clock())
    first = lane.hold()
    await first.__aenter__()
    gone = asyncio.create_task(lane.hold(due=1.0).__aenter__())
    ran: list[str] = []

    async def later() -> None:
        async with lane.hold(due=2.0):
            ran.append("later")

    stays = asyncio.create_task(later())
    await asyncio.sleep(0)  # one loop turn: both tasks run up to their wait
    assert lane.rules.waiting == 2
    gone.cancel()
    await first.__aexit__(None, None, None)  # grants "gone" first: it is cancelled
    await stays
    assert ran == ["later"]
    assert not lane.rules.running


async def test_speculate_context_releases_its_run() -> None:
    lane = Lane("test", 1, clock=Clock())
    async with lane.speculate() as ticket:
        assert ticket is not None
        with lane.speculate() as refused:
            assert refused is None
    assert not lane.rules.running


# --------------------------------------------------------------------------- pacing


def test_playback_before_any_audio_is_due_when_asked_for() -> None:
    """Fixed at the turn's end, not sliding with the clock: a first answer that runs never
    looks less urgent than one that waits."""
    clock = Clock(10.0)
    playback = Playback(PacingLimits(ahead_s=4.0, margin_s=1.0), clock=clock)
    clock.now = 12.0
    assert playback.due() == 10.0
    assert playback.ready_in() == 0.0


def test_playback_is_due_before_the_client_runs_out() -> None:
    clock = Clock(10.0)
    playback = Playback(PacingLimits(ahead_s=4.0, margin_s=1.0), clock=clock)
    playback.sent(6.0)
    playback.sent(2.0)  # queued behind the first chunk
    assert playback.buffered_s() == 8.0
    assert playback.due() == 17.0
    assert playback.ready_in() == 4.0  # more is wanted once 4 s are left
    clock.now = 15.0
    assert playback.ready_in() == 0.0


def test_playback_restarts_when_the_client_ran_dry() -> None:
    clock = Clock(10.0)
    playback = Playback(PacingLimits(ahead_s=4.0, margin_s=1.0), clock=clock)
    playback.sent(1.0)
    clock.now = 20.0  # everything played long ago
    assert playback.due() == 10.0  # overdue
    playback.sent(2.0)
    assert playback.buffered_s() == 2.0
    assert playback.sent_s == 3.0


def test_pressure_is_how_late_due_work_runs() -> None:
    rules = LaneRules(capacity=1)
    running = rules.request(due=0.0, now=0.0)
    assert rules.pressure(now=0.0) == 0.0
    rules.request(due=1.0, now=1.0)
    rules.speculate(now=1.0)  # refused; speculation never counts
    assert rules.pressure(now=1.5) == 0.5  # the waiter is overdue by 0.5 s
    rules.release(running, now=3.0)  # granted 2 s late
    assert rules.pressure(now=3.0) == 2.0
    assert rules.pressure(now=3.0 + 11.0) == 0.0  # out of the window


class _PacedLLM(LLM):
    """Two chunks with a pacing wait of ``wait_s`` between them."""

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        yield TextDelta("Hello.")
        assert request.pacer is not None
        await request.pacer.wait_ready()
        yield TextDelta(" Again.")


async def test_a_pacing_wait_does_not_count_against_the_backend_deadline() -> None:
    """The client still has audio to play: the engine's wait for it extends the
    between-chunk deadline instead of failing the answer with backend_timeout."""
    playback = Playback(PacingLimits(ahead_s=0.0, margin_s=0.0))
    playback.sent(0.6)  # 0.6 s of audio to play before more is wanted
    llm = _PacedLLM(deadlines=Deadlines(first_chunk_s=1.0, next_chunk_s=0.2, total_s=0.4))
    chunks = [c async for c in llm.stream(LLMRequest(messages=[], pacer=playback))]
    assert chunks == [TextDelta("Hello."), TextDelta(" Again.")]
    assert playback.waited_s > 0.4  # longer than both deadlines


async def test_a_stalled_engine_still_times_out_when_paced() -> None:
    class Stalled(LLM):
        async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
            yield TextDelta("Hello.")
            await asyncio.Event().wait()
            yield TextDelta("never")

    llm = Stalled(deadlines=Deadlines(first_chunk_s=1.0, next_chunk_s=0.05, total_s=None))
    stream = llm.stream(LLMRequest(messages=[], pacer=Playback()))
    assert await anext(stream) == TextDelta("Hello.")
    with pytest.raises(BackendTimeout):
        await anext(stream)


def test_an_idle_only_lane_speculates_only_when_nothing_runs() -> None:
    rules = LaneRules(capacity=2, speculate_idle_only=True)
    real = rules.request(due=0.0, now=0.0)
    assert rules.speculate(now=0.0) is None  # a run is free, but the model is busy
    rules.release(real, now=1.0)
    assert rules.speculate(now=1.0) is not None
    assert rules.stats.busy_s == 1.0


async def test_a_run_whose_work_became_less_urgent_makes_way() -> None:
    """A spoken answer is urgent until its first words are out; then a waiting first
    answer of another caller goes first (Lane.should_yield, read between tokens)."""
    lane = Lane("llm", 1, clock=Clock(0.0))
    running = lane.hold(due=0.0)
    ticket = await running.__aenter__()
    waiter = asyncio.create_task(lane.hold(due=5.0).__aenter__())
    await asyncio.sleep(0)  # one loop turn: the waiter queues
    assert not lane.should_yield(ticket, due=1.0)  # still more urgent than the waiter
    assert lane.should_yield(ticket, due=10.0)  # its next words are due after the waiter's
    running.release()
    await waiter


def test_a_first_answer_is_due_when_it_was_asked_for() -> None:
    """A turn's answer is due at its commit, however long its transcript took: the
    responder passes the commit time, so it is not served after turns that ended later."""
    clock = Clock(10.0)
    assert Playback(clock=clock, asked=8.5).due() == 8.5
    assert Playback(clock=clock).due() == 10.0

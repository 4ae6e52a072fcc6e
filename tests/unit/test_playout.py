"""The playout queue and frame pacer every call's outbound audio shares (transport/playout.py)."""

from __future__ import annotations

import asyncio

from rtgate.transport.playout import FramePacer, PlayoutQueue


class Log:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def started(self, response_id: str) -> None:
        self.calls.append(("started", response_id))

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        self.calls.append(("played", response_id, item_id, content_index, nbytes))

    def stopped(self, response_id: str) -> None:
        self.calls.append(("stopped", response_id))


def test_frames_report_started_played_and_stopped_in_order() -> None:
    log = Log()
    queue = PlayoutQueue(log, max_bytes=1000)
    queue.push("r1", "i1", 0, b"a" * 6)
    queue.push("r1", "i2", 0, b"b" * 2)
    queue.end("r1")
    queue.push("r2", "i3", 0, b"c" * 4)
    assert queue.head() == ("r1", "i1", 0)
    assert queue.take(4) == b"aaaa"
    assert log.calls == [("started", "r1"), ("played", "r1", "i1", 0, 4)]
    log.calls.clear()
    # The end marker right behind r1's last audio is reported with the frame that played it.
    assert queue.take(4) == b"aabb"
    assert log.calls == [("played", "r1", "i1", 0, 2), ("played", "r1", "i2", 0, 2), ("stopped", "r1")]
    log.calls.clear()
    assert queue.take(8) == b"cccc"  # the caller pads a short frame
    assert log.calls == [("started", "r2"), ("played", "r2", "i3", 0, 4)]
    assert not queue and queue.queued_bytes == 0


def test_clear_drops_everything_and_a_later_response_starts_again() -> None:
    log = Log()
    queue = PlayoutQueue(log, max_bytes=1000)
    queue.push("r1", "i1", 0, b"a" * 10)
    queue.end("r1")
    queue.take(2)
    queue.clear()
    assert queue.take(4) == b"" and queue.head() is None and queue.queued_bytes == 0
    queue.push("r1", "i1", 0, b"z" * 2)  # audio of the same response after a clear: started again
    log.calls.clear()
    queue.take(2)
    assert log.calls == [("started", "r1"), ("played", "r1", "i1", 0, 2)]


def test_audio_past_the_cap_is_dropped() -> None:
    queue = PlayoutQueue(Log(), max_bytes=10)
    assert queue.push("r", "i", 0, b"x" * 8)
    assert not queue.push("r", "i", 0, b"x" * 4)
    assert queue.queued_bytes == 8
    queue.take(4)
    assert queue.push("r", "i", 0, b"x" * 4)


def test_pacer_keeps_an_absolute_schedule_and_restarts_after_a_stall() -> None:
    now = [100.0]
    pacer = FramePacer(0.02, max_lag_s=0.2, clock=lambda: now[0])

    async def run() -> None:
        await pacer.wait()  # the first frame goes at once
        now[0] = 100.5  # the loop stalled for 0.5 s: no burst of 25 frames
        await pacer.wait()
        assert pacer._due == 100.5
        now[0] = 100.52  # on time: no wait, and the schedule is 100.5 + 0.02 n
        await pacer.wait()
        assert abs(pacer._due - 100.52) < 1e-9

    asyncio.run(run())

    catching_up = FramePacer(0.02, clock=lambda: now[0])
    now[0] = 0.0

    async def burst() -> None:
        await catching_up.wait()
        now[0] = 1.0  # without a lag limit the schedule is kept: the frames catch up
        await catching_up.wait()
        assert abs(catching_up._due - 0.02) < 1e-9

    asyncio.run(burst())

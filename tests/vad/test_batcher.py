"""VADBatcher: same results as direct calls, one model call per tick, clean lifecycle."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from rtgate.pipeline.base import VAD, BackendError, FloatAudio, VADStream
from rtgate.pipeline.vad_batcher import VADBatcher
from rtgate.pipeline.vad_silero import SileroVAD

from .conftest import frames_of


class GatedVAD(SileroVAD):
    """SileroVAD whose model calls wait for the test to open a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def infer_batch(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        self.calls += 1
        self.entered.set()
        self.gate.wait(10)
        return super().infer_batch(streams, frames)


class CountingVAD(VAD):
    """A generic VAD (not Silero): probability = frame peak; counts frames per stream."""

    class Stream(VADStream):
        def __init__(self) -> None:
            self.frames = 0

    def new_stream(self) -> VADStream:
        return self.Stream()

    def infer(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
        for stream in streams:
            assert isinstance(stream, self.Stream)
            stream.frames += 1
        return np.max(np.abs(frames), axis=1).astype(np.float32)


def test_results_match_direct_calls(vad, speech):
    """20 streams submitting uneven chunks concurrently get the probabilities of direct calls."""
    frames = frames_of(speech)[:40]
    signals = [np.roll(frames, 3 * k, axis=0) for k in range(20)]
    direct = SileroVAD()
    expected = []
    for signal in signals:
        stream = direct.new_stream()
        expected.append(direct.infer_frames(stream, signal))

    async def session(batcher: VADBatcher, signal: np.ndarray) -> np.ndarray:
        stream = vad.new_stream()
        cuts = [0, 1, 2, 5, 6, 9, 17, 18, 30, 40]
        parts = [await batcher.infer(stream, signal[a:b]) for a, b in itertools.pairwise(cuts)]
        return np.concatenate(parts)

    async def main() -> tuple[list[np.ndarray], int]:
        async with VADBatcher(vad) as batcher:
            got = await asyncio.gather(*(session(batcher, s) for s in signals))
            return got, batcher.ticks

    got, ticks = asyncio.run(main())
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)
    assert ticks < 20 * 9  # streams shared model calls


def test_long_requests_are_split_and_stay_in_order(vad, speech):
    """A request longer than max_frames_per_request runs in parts, in order."""
    frames = frames_of(speech)[:50]
    expected = SileroVAD().infer_frames(SileroVAD().new_stream(), frames)

    async def main() -> np.ndarray:
        async with VADBatcher(vad, max_frames_per_request=8) as batcher:
            return await batcher.infer(vad.new_stream(), frames)

    np.testing.assert_allclose(asyncio.run(main()), expected, atol=1e-5)


def test_a_generic_vad_gets_one_infer_call_per_frame_position():
    """Any VAD works: frames of a request run in order through VAD.infer."""
    counting = CountingVAD()
    frames = np.linspace(0, 1, 5 * 512, dtype=np.float32).reshape(5, 512)

    async def main() -> tuple[np.ndarray, VADStream]:
        stream = counting.new_stream()
        async with VADBatcher(counting) as batcher:
            return await batcher.infer(stream, frames), stream

    probs, stream = asyncio.run(main())
    np.testing.assert_allclose(probs, frames.max(axis=1))
    assert isinstance(stream, CountingVAD.Stream) and stream.frames == 5


def test_infer_before_start_or_after_stop_is_an_error(vad):
    frame = np.zeros((1, 512), np.float32)

    async def main() -> None:
        batcher = VADBatcher(vad)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.infer(vad.new_stream(), frame)
        async with batcher:
            pass
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.infer(vad.new_stream(), frame)
        with pytest.raises(RuntimeError, match="stopped"):
            await batcher.start()

    asyncio.run(main())


def test_bad_frames_fail_only_the_caller(vad):
    """A wrong shape or a foreign stream is rejected before it reaches a tick."""

    async def main() -> None:
        async with VADBatcher(vad) as batcher:
            with pytest.raises(ValueError, match=r"\[n, 512\]"):
                await batcher.infer(vad.new_stream(), np.zeros((1, 480), np.float32))
            with pytest.raises(TypeError, match="new_stream"):
                await batcher.infer(CountingVAD.Stream(), np.zeros((1, 512), np.float32))

    asyncio.run(main())


def test_cancelled_before_its_tick_the_stream_does_not_advance():
    """A request cancelled while it waits is dropped; its stream keeps its state."""
    gated = GatedVAD()
    frame = np.full((1, 512), 0.1, np.float32)

    async def main() -> None:
        async with VADBatcher(gated) as batcher:
            first = asyncio.create_task(batcher.infer(gated.new_stream(), frame))
            await asyncio.to_thread(gated.entered.wait, 10)  # tick 1 is running
            stream = gated.new_stream()
            waiting = asyncio.create_task(batcher.infer(stream, frame))
            await asyncio.sleep(0)  # one yield: the task enqueues and awaits its future
            waiting.cancel()
            gated.gate.set()
            await first
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await batcher.infer(gated.new_stream(), frame)  # a later tick runs
            assert stream.frames == 0  # type: ignore[attr-defined]

    asyncio.run(main())


def test_stop_delivers_the_call_in_flight_and_fails_the_rest():
    """stop() waits for the model call in flight, then fails queued requests; no task leaks."""
    gated = GatedVAD()
    frame = np.full((1, 512), 0.1, np.float32)

    async def main() -> None:
        batcher = VADBatcher(gated)
        await batcher.start()
        in_flight = asyncio.create_task(batcher.infer(gated.new_stream(), frame))
        await asyncio.to_thread(gated.entered.wait, 10)
        queued = asyncio.create_task(batcher.infer(gated.new_stream(), frame))
        await asyncio.sleep(0)  # one yield: the request is queued
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0)  # one yield: stop() has cancelled the worker mid-call
        gated.gate.set()
        await stopping
        assert (await in_flight).shape == (1,)
        with pytest.raises(BackendError) as error:
            await queued
        assert error.value.code == "vad_stopped"
        assert not batcher.running
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def test_a_failing_model_fails_that_tick_and_the_batcher_goes_on(vad):
    """An exception in the model becomes BackendError for that tick's callers only."""

    class Flaky(CountingVAD):
        fail = True

        def infer(self, streams: Sequence[VADStream], frames: FloatAudio) -> FloatAudio:
            if self.fail:
                self.fail = False
                raise RuntimeError("boom")
            return super().infer(streams, frames)

    flaky = Flaky()
    frame = np.zeros((1, 512), np.float32)

    async def main() -> None:
        async with VADBatcher(flaky) as batcher:
            with pytest.raises(BackendError, match="boom"):
                await batcher.infer(flaky.new_stream(), frame)
            assert (await batcher.infer(flaky.new_stream(), frame)).shape == (1,)

    asyncio.run(main())


def test_the_queue_is_bounded():
    """With max_pending=2 and the model busy, a third request waits for room."""
    gated = GatedVAD()
    frame = np.full((1, 512), 0.1, np.float32)

    async def main() -> None:
        async with VADBatcher(gated, max_pending=2) as batcher:
            first = asyncio.create_task(batcher.infer(gated.new_stream(), frame))
            await asyncio.to_thread(gated.entered.wait, 10)
            more = [asyncio.create_task(batcher.infer(gated.new_stream(), frame)) for _ in range(3)]
            await asyncio.sleep(0)  # one yield: the three tasks run up to their first await
            assert batcher._queue.qsize() == 2
            assert not any(task.done() for task in more)
            gated.gate.set()
            await asyncio.gather(first, *more)

    asyncio.run(main())


def _wire(signal: np.ndarray) -> bytes:
    from rtgate.audio import float_to_pcm16

    return float_to_pcm16(signal)


@pytest.mark.parametrize("inline_tick_frames", [0, 64])
def test_feeds_match_direct_calls_in_order(vad, speech, inline_tick_frames):
    """Audio pushed in 20 ms chunks to 8 feeds (on the pool or inline) gives the direct results."""
    from rtgate.pipeline.vad_batcher import VADInput

    wire = _wire(speech[: 24_000 * 2])
    chunks = [wire[i : i + 960] for i in range(0, len(wire), 960)]
    direct = SileroVAD()
    source, stream = VADInput(), direct.new_stream()
    expected = direct.infer_frames(stream, np.concatenate([source.feed(c) for c in chunks]))

    async def main() -> list[np.ndarray]:
        got: list[dict[int, np.ndarray]] = [{} for _ in range(8)]
        complete = asyncio.Event()

        def on_result(k: int, first: int, probs: np.ndarray) -> None:
            got[k][first] = probs
            if sum(len(p) for parts in got for p in parts.values()) == 8 * len(expected):
                complete.set()

        async with VADBatcher(
            vad, tick_interval_s=0.005, inline_tick_frames=inline_tick_frames
        ) as batcher:
            feeds = [
                batcher.open_feed(lambda first, probs, k=k: on_result(k, first, probs))
                for k in range(8)
            ]
            for chunk in chunks:
                for feed in feeds:
                    assert feed.push(chunk)
                await asyncio.sleep(0.001)
            await asyncio.wait_for(complete.wait(), 10)
            for feed in feeds:
                feed.close()
        return [np.concatenate([parts[k] for k in sorted(parts)]) for parts in got]

    for result in asyncio.run(main()):
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_uneven_feeds_and_requests_in_the_same_ticks_match_direct_calls(vad, speech):
    """Feeds that complete different numbers of frames per tick (so a tick's product is
    split per stream), alongside ``infer`` requests, each get the direct results."""
    from rtgate.pipeline.vad_batcher import VADInput

    wire = _wire(speech[: 24_000 * 2])
    direct = SileroVAD()
    source, stream = VADInput(), direct.new_stream()
    expected = direct.infer_frames(stream, source.feed(wire))
    sizes = [960, 2 * 960, 5 * 960, 1234]  # bytes per push: 20, 40, 100 ms and uneven
    request_frames = frames_of(speech[16_000 : 16_000 * 3])
    request_expected = SileroVAD().infer_frames(SileroVAD().new_stream(), request_frames)

    async def main() -> tuple[list[np.ndarray], np.ndarray]:
        got: list[dict[int, np.ndarray]] = [{} for _ in sizes]
        complete = asyncio.Event()

        def on_result(k: int, first: int, probs: np.ndarray) -> None:
            got[k][first] = probs
            if sum(len(p) for parts in got for p in parts.values()) == len(sizes) * len(expected):
                complete.set()

        async with VADBatcher(vad, tick_interval_s=0.005) as batcher:
            feeds = [
                batcher.open_feed(lambda first, probs, k=k: on_result(k, first, probs))
                for k in range(len(sizes))
            ]
            request_stream = vad.new_stream()

            async def requests() -> np.ndarray:
                parts = [
                    await batcher.infer(request_stream, request_frames[i : i + 3])
                    for i in range(0, len(request_frames), 3)
                ]
                return np.concatenate(parts)

            asked = asyncio.ensure_future(requests())
            offsets = [0] * len(sizes)
            while any(offset < len(wire) for offset in offsets):
                for k, size in enumerate(sizes):
                    if offsets[k] < len(wire):
                        assert feeds[k].push(wire[offsets[k] : offsets[k] + size])
                        offsets[k] += size
                await asyncio.sleep(0.001)
            await asyncio.wait_for(complete.wait(), 10)
            request_result = await asyncio.wait_for(asked, 10)
            for feed in feeds:
                feed.close()
        return [np.concatenate([parts[k] for k in sorted(parts)]) for parts in got], request_result

    results, request_result = asyncio.run(main())
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)
    np.testing.assert_allclose(request_result, request_expected, atol=1e-5)


def test_a_feed_past_its_bound_gets_silence_and_keeps_its_clock():
    """Audio pushed while a feed holds max_pending_s is replaced by silence, not lost."""
    gated = GatedVAD()
    second = bytes(48_000)  # 1 s of 24 kHz PCM16

    async def main() -> tuple[list[tuple[int, int]], int, list[bool]]:
        results: list[tuple[int, int]] = []
        complete = asyncio.Event()

        def on_result(first: int, probs: np.ndarray) -> None:
            results.append((first, len(probs)))
            if sum(n for _, n in results) >= 63:  # 2.04 s at 16 kHz: 63 whole frames
                complete.set()

        async with VADBatcher(gated, max_frames_per_request=1000) as batcher:
            feed = batcher.open_feed(on_result, max_pending_s=1.0)
            feed.push(second)
            await asyncio.to_thread(gated.entered.wait, 10)  # tick 1 holds the first second
            kept = [feed.push(second), feed.push(bytes(960)), feed.push(bytes(960))]
            gated.gate.set()
            await asyncio.wait_for(complete.wait(), 10)
            return results, feed.dropped_bytes, kept

    results, dropped, kept = asyncio.run(main())
    assert kept == [True, False, False] and dropped == 1920
    assert results[0] == (0, 31)
    assert [first for first, _ in results] == list(itertools.accumulate([0] + [n for _, n in results[:-1]]))

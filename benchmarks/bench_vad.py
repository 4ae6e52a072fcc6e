"""Silero VAD cost per frame: per-frame calls vs multi-frame vs batched across streams,
the MatMul encoder vs the original convolutions, and the server's feed path.

    python benchmarks/bench_vad.py [--seconds 2] [--sessions 256]

Every row is measured in CPU time of this process (onnxruntime is single-threaded), so
"frames/s per core" is frames divided by CPU seconds. A session streaming 24 kHz PCM in
real time needs 31.25 frames/s (16 kHz, 512 samples per frame); "sessions/core" is
frames/s per core divided by that. The last rows include everything a session costs
the VAD path: 24 kHz PCM16 → 16 kHz frames (VADInput, or FrameCutter inside the ticks
for feeds) and the asyncio VADBatcher.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import numpy as np

from rtgate.audio import float_to_pcm16
from rtgate.pipeline.vad_batcher import VADBatcher, VADInput
from rtgate.pipeline.vad_silero import FRAME_SAMPLES, SileroVAD

FRAMES_PER_SESSION_SECOND = 16_000 / FRAME_SAMPLES  # 31.25
TARGET_SESSIONS_PER_CORE = 200


def speechlike(frames: int, seed: int = 0) -> np.ndarray:
    """Noise-modulated harmonics: keeps the model's work realistic (no zero shortcuts)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames * FRAME_SAMPLES) / 16_000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16_000) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    signal = 0.1 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    return signal.astype(np.float32).reshape(frames, FRAME_SAMPLES)


def cpu_per_frame(run: Callable[[], int], seconds: float) -> float:
    """CPU seconds per frame of ``run`` (which returns frames done), repeated ≥ ``seconds``."""
    run()  # warm up
    frames = 0
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    while time.perf_counter() - start_wall < seconds:
        frames += run()
    return (time.process_time() - start_cpu) / frames


def per_frame_baseline(vad: SileroVAD, streams: int) -> Callable[[], int]:
    states = [vad.new_stream() for _ in range(streams)]
    data = speechlike(streams)

    def run() -> int:
        for state, frame in zip(states, data, strict=True):
            vad.infer([state], frame[None])
        return streams

    return run


def multi_frame(vad: SileroVAD, streams: int, steps: int) -> Callable[[], int]:
    states = [vad.new_stream() for _ in range(streams)]
    data = speechlike(streams * steps).reshape(streams, steps, FRAME_SAMPLES)

    def run() -> int:
        for state, frames in zip(states, data, strict=True):
            vad.infer_frames(state, frames)
        return streams * steps

    return run


def batched(vad: SileroVAD, streams: int, steps: int) -> Callable[[], int]:
    states = [vad.new_stream() for _ in range(streams)]
    data = speechlike(streams * steps).reshape(streams, steps, FRAME_SAMPLES)

    def run() -> int:
        vad.infer_batch(states, data)
        return streams * steps

    return run


def resampling_only(chunk_ms: int) -> Callable[[], int]:
    """VADInput alone: 24 kHz PCM16 chunks → 16 kHz frames."""
    source = VADInput()
    pcm = float_to_pcm16(
        np.resize(speechlike(8).ravel(), 24 * chunk_ms * 100)
    )  # 100 chunks of 24 kHz audio
    size = 48 * chunk_ms

    def run() -> int:
        return sum(source.feed(pcm[i : i + size]).shape[0] for i in range(0, len(pcm), size))

    return run


def end_to_end(vad: SileroVAD, sessions: int, chunk_ms: int, seconds: float) -> float:
    """CPU seconds per frame for ``sessions`` feeding ``chunk_ms`` chunks through the batcher."""
    pcm = float_to_pcm16(np.resize(speechlike(64).ravel(), 24_000 * 2))  # 2 s loop
    size = 48 * chunk_ms

    async def session(batcher: VADBatcher, rounds: int, offset: int) -> int:
        source, stream, done = VADInput(), vad.new_stream(), 0
        for r in range(rounds):
            start = (offset + r * size) % (len(pcm) - size)
            start -= start % 2
            frames = source.feed(pcm[start : start + size])
            if frames.shape[0]:
                await batcher.infer(stream, frames)
                done += frames.shape[0]
        return done

    async def main() -> float:
        rounds = 50
        async with VADBatcher(vad) as batcher:
            await asyncio.gather(*(session(batcher, 5, 997 * k) for k in range(sessions)))
            frames = 0
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            while time.perf_counter() - start_wall < seconds:
                counts = await asyncio.gather(
                    *(session(batcher, rounds, 997 * k) for k in range(sessions))
                )
                frames += sum(counts)
            return (time.process_time() - start_cpu) / frames

    return asyncio.run(main())


def feeds_end_to_end(vad: SileroVAD, sessions: int, seconds: float) -> float:
    """CPU seconds per frame for ``sessions`` feeds (the server's path: ``open_feed`` +
    ``push`` of 20 ms chunks, resampling and framing inside the ticks), half the sessions
    pushing per 10 ms round, ticks inline on this loop."""
    pcm = float_to_pcm16(np.resize(speechlike(64).ravel(), 24_000 * 2))  # 2 s loop
    size = 960  # 20 ms of 24 kHz PCM16

    async def main() -> float:
        delivered = [0]

        def on_result(first: int, probs: np.ndarray) -> None:
            delivered[0] += len(probs)

        async with VADBatcher(vad, inline_tick_frames=1 << 20) as batcher:
            feeds = [batcher.open_feed(on_result) for _ in range(sessions)]
            start_cpu, start_wall, rounds = time.process_time(), time.perf_counter(), 0
            while time.perf_counter() - start_wall < seconds or rounds < 100:
                for k in range(rounds % 2, sessions, 2):
                    start = ((k * 37 + rounds // 2) * size) % (len(pcm) - size)
                    feeds[k].push(pcm[start : start + size])
                rounds += 1
                for _ in range(3):  # let the worker wake up and run its tick
                    await asyncio.sleep(0)
            cost = (time.process_time() - start_cpu) / max(1, delivered[0])
            for feed in feeds:
                feed.close()
            return cost

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.5, help="time per row (default 1.5)")
    parser.add_argument("--sessions", type=int, default=256, help="sessions in end-to-end rows")
    args = parser.parse_args(argv)

    plain = SileroVAD(batching=False)
    vad = SileroVAD()
    s = args.seconds
    rows: list[tuple[str, str, float]] = [
        (
            "per-stream, per-frame call (baseline, original graph)",
            "1",
            cpu_per_frame(per_frame_baseline(plain, 64), s),
        ),
        (
            "per-stream, per-frame call (rewritten graph)",
            "1",
            cpu_per_frame(per_frame_baseline(vad, 64), s),
        ),
    ]
    for steps in (3, 5, 16):
        rows.append(
            (
                f"multi-frame per stream, {steps} frames/call",
                str(steps),
                cpu_per_frame(multi_frame(vad, 64, steps), s),
            )
        )
    for streams in (8, 32, 128, 512):
        rows.append(
            (
                f"batched, {streams} streams x 1 frame",
                str(streams),
                cpu_per_frame(batched(vad, streams, 1), s),
            )
        )
    rows.append(("batched, 128 streams x 3 frames", "384", cpu_per_frame(batched(vad, 128, 3), s)))
    conv = SileroVAD(fast_encoder=False)
    for streams in (32, 128):
        rows.append(
            (
                f"batched, {streams} streams x 1 frame, original conv encoder (fast_encoder=False)",
                str(streams),
                cpu_per_frame(batched(conv, streams, 1), s),
            )
        )
    resample_cost = cpu_per_frame(resampling_only(20), s)
    rows.append(("resampling only: VADInput 24 kHz PCM16, 20 ms chunks", "-", resample_cost))
    for chunk_ms in (20, 100):
        rows.append(
            (
                f"end to end: {args.sessions} sessions, {chunk_ms} ms chunks, "
                "VADInput + VADBatcher",
                "batched",
                end_to_end(vad, args.sessions, chunk_ms, s),
            )
        )

    rows.append(
        (
            f"end to end: {args.sessions} feeds, 20 ms chunks, open_feed + push "
            "(FrameCutter, the server's path)",
            "batched",
            feeds_end_to_end(vad, args.sessions, s),
        )
    )

    baseline = rows[0][2]
    print(
        "| path | frames per call | CPU µs / frame | frames/s per core "
        "| sessions per core | speed-up vs baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, per_call, cost in rows:
        rate = 1.0 / cost
        print(
            f"| {name} | {per_call} | {cost * 1e6:.1f} | {rate:,.0f} | "
            f"{rate / FRAMES_PER_SESSION_SECOND:,.0f} | {baseline / cost:.2f}x |"
        )
    best = rows[-1][2]
    sessions = 1.0 / best / FRAMES_PER_SESSION_SECOND
    verdict = "meets" if sessions >= TARGET_SESSIONS_PER_CORE else "misses"
    print(
        f"\nEnd to end with 20 ms chunks: {sessions:,.0f} sessions per core "
        f"({verdict} the target of {TARGET_SESSIONS_PER_CORE}; VAD path only, no protocol work)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-event cost of the two hot protocol paths, against bare JSON baselines in the same run.

    python benchmarks/bench_protocol.py [--quick] [--repeats 7] [--iterations 20000]

(a) **decode** ``input_audio_buffer.append`` with 20 ms and 100 ms of 24 kHz PCM16
    (base64) through :func:`rtgate.protocol.client_events.decode_client_event` — what the
    server runs per inbound audio frame.
(b) **encode** ``response.output_audio.delta`` with 20 ms and 100 ms of audio: the core's
    :meth:`rtgate.core.session.Session.on_response_audio` (item bookkeeping, base64, the
    event dict) followed by ``orjson.dumps(event).decode()``, as the transport's ``_send``
    does.

Baselines run on the very same frame / event in the same process, interleaved with the
measured path: ``json.loads``/``orjson.loads`` of the frame (and ``orjson.loads`` +
``binascii.a2b_base64``, the least any decoder must do) for (a); ``json.dumps``/
``orjson.dumps`` of the finished event dict (and ``b64encode`` + ``orjson.dumps``) for (b).

Timing: ``time.perf_counter_ns`` around a loop of ``--iterations`` calls; the figure is
the median over ``--repeats`` loops, in µs per event. Ratio = path ÷ ``orjson`` baseline.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from rtgate.core.session import Session
from rtgate.protocol.client_events import InputAudioAppend, decode_client_event

SAMPLE_RATE = 24_000


def pcm16(ms: int, seed: int = 0) -> bytes:
    """Noisy PCM16 (incompressible-ish, like real audio) of ``ms`` milliseconds at 24 kHz."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(SAMPLE_RATE * ms // 1000) * 3000).clip(-32768, 32767)
    return samples.astype("<i2").tobytes()


def time_per_call(fn: Callable[[], Any], iterations: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean µs per call of ``fn`` (one warm-up loop first)."""
    for _ in range(min(iterations, 1000)):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        runs.append((time.perf_counter_ns() - start) / iterations / 1000)
    return statistics.median(runs)


def decode_cases(ms: int) -> dict[str, Callable[[], Any]]:
    frame = orjson.dumps(
        {"type": "input_audio_buffer.append", "event_id": "event_123", "audio": base64.b64encode(pcm16(ms)).decode()}
    ).decode()
    event = decode_client_event(frame)
    assert isinstance(event, InputAudioAppend) and len(event.audio) == SAMPLE_RATE * ms // 500

    def orjson_b64() -> bytes:
        return binascii.a2b_base64(orjson.loads(frame)["audio"], strict_mode=True)

    return {
        "decode_client_event": lambda: decode_client_event(frame),
        "json.loads": lambda: json.loads(frame),
        "orjson.loads": lambda: orjson.loads(frame),
        "orjson.loads + a2b_base64": orjson_b64,
    }


class _AudioSource:
    """A session with an active response; a new response every ``response_s`` of audio.

    The response length matters: the core appends each delta to the stored item's audio
    (``Conversation.add_audio``), so the per-delta cost grows with the audio already sent.
    """

    def __init__(self, chunk_ms: int = 20, response_s: float = 2.0) -> None:
        self._count = 0
        self.renew_every = max(1, round(response_s * 1000 / chunk_ms))
        self._new()

    def _new(self) -> None:
        self.session = Session(session_id="sess_bench", now=0.0)
        self.session.start()
        created = self.session.handle(decode_client_event('{"type":"response.create"}'), 0.0)
        self.response_id = next(o for o in created if isinstance(o, dict))["response"]["id"]
        self.session.on_response_audio(self.response_id, b"", "x")  # opens the audio item

    def emit(self, audio: bytes) -> str:
        self._count += 1
        if self._count % self.renew_every == 0:
            self._new()
        (event,) = self.session.on_response_audio(self.response_id, audio, "")
        assert isinstance(event, dict)
        return orjson.dumps(event).decode()


def encode_cases(ms: int) -> dict[str, Callable[[], Any]]:
    audio = pcm16(ms, seed=1)
    source = _AudioSource(ms, response_s=2.0)
    long_source = _AudioSource(ms, response_s=30.0)
    (event,) = source.session.on_response_audio(source.response_id, audio, "")
    assert isinstance(event, dict) and event["type"] == "response.output_audio.delta"
    fields = {k: v for k, v in event.items() if k != "delta"}

    def b64_orjson() -> str:
        return orjson.dumps({**fields, "delta": base64.b64encode(audio).decode("ascii")}).decode()

    return {
        "on_response_audio + orjson.dumps (2 s responses)": lambda: source.emit(audio),
        "on_response_audio + orjson.dumps (30 s responses)": lambda: long_source.emit(audio),
        "json.dumps": lambda: json.dumps(event),
        "orjson.dumps": lambda: orjson.dumps(event).decode(),
        "b64encode + orjson.dumps": b64_orjson,
    }


def run(iterations: int, repeats: int) -> list[tuple[str, int, str, float]]:
    rows = []
    for path, build in (("decode append", decode_cases), ("encode audio.delta", encode_cases)):
        for ms in (20, 100):
            for name, fn in build(ms).items():
                rows.append((path, ms, name, time_per_call(fn, iterations, repeats)))
    return rows


def markdown(rows: list[tuple[str, int, str, float]], iterations: int, repeats: int) -> str:
    baseline = {(p, ms): us for p, ms, name, us in rows if name in ("orjson.loads", "orjson.dumps")}
    out = [
        f"### Protocol: per-event cost (python {platform.python_version()}, "
        f"orjson {orjson.__version__}, {iterations} iterations × median of {repeats})",
        "",
        "| path | audio | implementation | µs/event | × orjson baseline |",
        "|---|---:|---|---:|---:|",
    ]
    for path, ms, name, us in rows:
        out.append(f"| {path} | {ms} ms | {name} | {us:.2f} | {us / baseline[(path, ms)]:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20_000, help="calls per timed loop")
    parser.add_argument("--repeats", type=int, default=7, help="timed loops; the median is reported")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about 5 s)")
    args = parser.parse_args(argv)
    iterations, repeats = (3000, 5) if args.quick else (args.iterations, args.repeats)
    print(markdown(run(iterations, repeats), iterations, repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())

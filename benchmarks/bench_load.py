"""Load generator: N concurrent real-time audio sessions against a real rtgate on loopback.

    python benchmarks/bench_load.py [--quick] [--sessions 5,10,25,50,100,200,300,400] [--step-seconds 15]
        [--pipelines builtin[,default]] [--server-cpus 1]

The server is a separate process (``python -m rtgate serve --pipeline builtin``: the
deterministic echo model and tone TTS, real Silero VAD with cross-session batching), so
its CPU time can be read from ``/proc/<pid>/stat`` (all its threads) apart from the
client's. ``--pipelines builtin,default`` runs the same ramp against the default speech
stack too, in the same run, so that the cost of listening sessions (``--no-responses``:
turn detection only) on the real stack is compared with the builtin one's;
``--server-cpus 1`` pins the server to that CPU list (``taskset``) and the load
generator to the others. The client is this process: one asyncio loop and the ``websockets`` library
directly (no SDK), with every ``input_audio_buffer.append`` frame pre-encoded, so its
per-chunk cost is one WebSocket send.

Each session sends ``session.update`` with ``server_vad`` (threshold 0.5, prefix 300 ms,
silence 200 ms, ``create_response`` on), then streams 24 kHz PCM16 in 20 ms chunks in
real time, paced by an absolute schedule (chunk k of a session leaves at
``t0 + phase + (k+1)·20 ms``, when its audio would exist on a live microphone; phases
are spread over the 20 ms so sessions are not in lock-step). The audio is a spoken
sentence (espeak-ng, resampled to 24 kHz) followed by quiet noise, looped; each session
starts at a different point of the loop. Every utterance yields ``speech_started`` and
``speech_stopped``, and the builtin backend then answers with tone audio, so the server
also streams responses (and cancels them on barge-in) — a realistic mix.

**Event lag.** The VAD decides a transition on one 32 ms frame, at a known position of
the session's audio clock (the session is configured before any audio, so the clock
starts at 0):

* ``speech_stopped``: the deciding frame ends at ``audio_end_ms`` (SPEC: it includes the
  silence window);
* ``speech_started``: the deciding frame starts at ``audio_start_ms + prefix_padding_ms``
  and ends 32 ms later (events whose start was clamped to the buffer start are skipped:
  their deciding position is unknown).

Lag = (client receive time of the event) − (client send time of the chunk holding the last
sample of that frame). It is what a user waits beyond the audio itself: transport, decode,
queueing, resampling, the batched VAD and the event's way back. Its floor is not zero: the
resampler needs a few samples past the frame, which can be in the next chunk (≤ 20 ms).
Send times are actual (not scheduled), so a late client does not count against the
server; client lateness is reported separately.

**Server CPU.** utime+stime of the server process over the measured window (after
``--warmup-seconds``), divided by wall time = cores used; CPU per session-second =
CPU seconds ÷ (N × window seconds). "Sessions per core" = N ÷ cores used. The pass
criterion is p99 lag < 50 ms, with no VAD frames dropped (server log). "Other
processes' CPU" (from ``/proc/stat``, minus server and client) shows how busy the
machine was with anything else: on a shared machine, compare runs only alongside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect

RATE = 24_000
CHUNK_MS = 20
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
FRAME_MS = 32  # Silero frame: 512 samples at 16 kHz
PREFIX_MS = 300
SILENCE_MS = 200
PHASES = 10
TEXT = "Hello, can you hear me? I would like a table for two."
PASS_P99_MS = 50.0
TARGET_PER_CORE = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")

def session_update(create_response: bool) -> str:
    return orjson.dumps(
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": PREFIX_MS,
                        "silence_duration_ms": SILENCE_MS,
                        "create_response": create_response,
                        "interrupt_response": True,
                    },
                }
            },
        },
    }
    ).decode()


SESSION_UPDATE = session_update(True)


# ---------------------------------------------------------------------- audio


def speech_clip(silence_s: float = 1.2) -> tuple[np.ndarray, str]:
    """One utterance + quiet noise at 24 kHz int16, and where it came from."""
    rng = np.random.default_rng(0)
    espeak = shutil.which("espeak-ng")
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "speech.wav"
            subprocess.run([espeak, "-s", "170", "-w", str(path), TEXT], check=True)
            with wave.open(str(path)) as w:
                rate = w.getframerate()
                raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
        t_out = np.arange(int(len(raw) * RATE / rate)) / RATE
        speech = np.interp(t_out, np.arange(len(raw)) / rate, raw)
        source = f"espeak-ng sentence ({len(speech) / RATE:.1f} s)"
    else:  # harmonic "voice" with a syllable envelope: Silero scores it as speech
        t = np.arange(int(2.0 * RATE)) / RATE
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
        voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / RATE) / k for k in range(1, 8))
        speech = 6000 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        source = "synthetic harmonics (espeak-ng not found)"
    quiet = rng.standard_normal(int(silence_s * RATE)) * 30
    clip = np.concatenate([speech + rng.standard_normal(len(speech)) * 30, quiet])
    clip = clip[: len(clip) // CHUNK_SAMPLES * CHUNK_SAMPLES]
    return clip.clip(-32768, 32767).astype("<i2"), source


def append_frames(clip: np.ndarray) -> list[str]:
    """The clip as pre-encoded ``input_audio_buffer.append`` frames, one per 20 ms chunk."""
    chunks = clip.reshape(-1, CHUNK_SAMPLES)
    return [
        orjson.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(c.tobytes()).decode()}).decode()
        for c in chunks
    ]


# ---------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (``/proc/stat``, all CPUs)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextlib.contextmanager
def rtgate_server(log_path: Path, pipeline: str = "builtin", cpus: str | None = None):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pin = ["taskset", "-c", cpus] if cpus else []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "rtgate", "serve", "--pipeline", pipeline, "--port", str(port),
             "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"rtgate serve exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("rtgate serve did not become ready in 120 s")
                time.sleep(0.2)
            yield proc, port
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- client


@dataclass
class Client:
    ws: ClientConnection
    offset: int
    """Index of this session's first chunk in the clip."""
    sent: list[float] = field(default_factory=list)
    """Actual send time of chunk k (monotonic seconds)."""
    floor_ms: int = 0
    """Start of the uncommitted buffer: 0, then each ``audio_end_ms``."""
    events: int = 0
    errors: int = 0


@dataclass
class StepResult:
    sessions: int
    window_s: float
    lags_ms: list[float]
    events: int
    errors: int
    server_cpu_s: float
    client_cpu_s: float
    late_ms: list[float]
    dropped_warnings: int
    connect_s: float
    other_cpu_s: float = 0.0
    """CPU used by every other process on the machine in the window (the shared-machine noise)."""

    def pct(self, values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    @property
    def cores(self) -> float:
        return self.server_cpu_s / self.window_s

    @property
    def passed(self) -> bool:
        return bool(self.lags_ms) and self.pct(self.lags_ms, 99) < PASS_P99_MS and not self.dropped_warnings


def vad_drop_warnings(log_path: Path) -> int:
    """Server log lines saying a session's VAD fell behind and audio was dropped."""
    return log_path.read_text().count("VAD is falling behind")


def chunk_of(position_ms: float) -> int:
    """Index of the 20 ms chunk that holds the last sample before ``position_ms``."""
    return max(0, -(-int(position_ms) // CHUNK_MS) - 1)


def deciding_position(event: dict[str, Any], floor_ms: int) -> tuple[int | None, int]:
    """Where the VAD frame that decided a speech event ends (ms of the session's audio),
    and the new floor: ``(None, floor)`` for another event, or for a ``speech_started``
    clamped to the buffer start (its deciding frame is unknown)."""
    if event["type"] == "input_audio_buffer.speech_stopped":
        return event["audio_end_ms"], event["audio_end_ms"]
    if event["type"] == "input_audio_buffer.speech_started" and event["audio_start_ms"] > floor_ms:
        return event["audio_start_ms"] + PREFIX_MS + FRAME_MS, floor_ms
    return None, floor_ms


async def receive(client: Client, lags: list[float], window: tuple[float, float]) -> None:
    async for message in client.ws:
        now = time.monotonic()
        if not isinstance(message, str):
            continue
        if message.startswith('{"type":"error"'):
            client.errors += 1
            continue
        if not message.startswith('{"type":"input_audio_buffer.speech_'):
            continue
        position, client.floor_ms = deciding_position(orjson.loads(message), client.floor_ms)
        if position is None:
            continue
        client.events += 1
        k = chunk_of(position)
        if k < len(client.sent) and window[0] <= client.sent[k] <= window[1]:
            lags.append((now - client.sent[k]) * 1000)


async def open_session(url: str) -> ClientConnection:
    ws = await connect(
        url, additional_headers={"Authorization": "Bearer bench"}, compression=None,
        max_size=None, ping_interval=None, open_timeout=60, close_timeout=2,
    )
    created = json.loads(await ws.recv())
    assert created["type"] == "session.created", created
    await ws.send(SESSION_UPDATE)
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "session.updated":
            return ws
        if event["type"] == "error":
            raise RuntimeError(f"session.update rejected: {event}")


async def pace(group: list[Client], frames: list[str], t0: float, phase: float, stop: float,
               late: list[float]) -> None:
    """Send chunk k of every session in ``group`` at t0 + phase + (k+1)·20 ms."""
    k = 0
    while True:
        due = t0 + phase + (k + 1) * CHUNK_MS / 1000
        if due > stop:
            return
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for client in group:
            now = time.monotonic()
            late.append((now - due) * 1000)
            client.sent.append(now)
            with contextlib.suppress(Exception):
                await client.ws.send(frames[(client.offset + k) % len(frames)])
        k += 1


async def run_step(port: int, server_pid: int, n: int, frames: list[str], seconds: float,
                   warmup: float, log_path: Path) -> StepResult:
    url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    started = time.monotonic()
    gate = asyncio.Semaphore(32)

    async def opened(i: int) -> Client:
        async with gate:
            ws = await open_session(url)
        return Client(ws, offset=(i * 37) % len(frames))

    clients = await asyncio.gather(*(opened(i) for i in range(n)))
    connect_s = time.monotonic() - started
    warnings_before = vad_drop_warnings(log_path)
    t0 = time.monotonic() + 0.2
    stop = t0 + seconds
    window = (t0 + warmup, stop)
    lags: list[float] = []
    late: list[float] = []
    receivers = [asyncio.create_task(receive(c, lags, window)) for c in clients]
    groups = [clients[g::PHASES] for g in range(PHASES)]
    pacers = [
        asyncio.create_task(pace(g, frames, t0, i * CHUNK_MS / 1000 / PHASES, stop, late))
        for i, g in enumerate(groups) if g
    ]
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    cpu0, own0, wall0 = cpu_seconds(server_pid), time.process_time(), time.monotonic()
    all0 = machine_busy_seconds()
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    cpu1, own1, wall1 = cpu_seconds(server_pid), time.process_time(), time.monotonic()
    all1 = machine_busy_seconds()
    await asyncio.gather(*pacers)
    await asyncio.sleep(0.5)  # let events for the last chunks of the window arrive
    for task in receivers:
        task.cancel()
    await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
    await asyncio.gather(*receivers, return_exceptions=True)
    late_in_window = late[int(len(late) * warmup / seconds):]
    return StepResult(
        sessions=n, window_s=wall1 - wall0, lags_ms=lags,
        events=sum(c.events for c in clients), errors=sum(c.errors for c in clients),
        server_cpu_s=cpu1 - cpu0, client_cpu_s=own1 - own0, late_ms=late_in_window,
        dropped_warnings=vad_drop_warnings(log_path) - warnings_before,
        connect_s=connect_s,
        other_cpu_s=max(0.0, (all1 - all0) - (cpu1 - cpu0) - (own1 - own0)),
    )


async def wait_idle(port: int, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
        )
        if json.loads(body)["sessions"] == 0:
            return
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- report


def markdown(results: list[StepResult], source: str, seconds: float, warmup: float) -> str:
    lines = [
        f"### Load: {CHUNK_MS} ms chunks of 24 kHz PCM16 in real time, server_vad on "
        f"({source}; {seconds:.0f} s per step, first {warmup:.0f} s not measured)",
        "",
        "| sessions | speech events | p50 lag ms | p99 lag ms | max lag ms | server cores used "
        "| server CPU ms per session-s | sessions per core | client CPU cores | client late p99 ms "
        "| VAD drop warnings | errors | p99 < 50 ms | other processes' CPU cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.sessions} | {len(r.lags_ms)} | {r.pct(r.lags_ms, 50):.1f} | {r.pct(r.lags_ms, 99):.1f} "
            f"| {max(r.lags_ms, default=float('nan')):.1f} | {r.cores:.2f} "
            f"| {1000 * r.server_cpu_s / (r.sessions * r.window_s):.2f} "
            f"| {r.sessions / r.cores if r.cores else float('nan'):.0f} "
            f"| {r.client_cpu_s / r.window_s:.2f} | {r.pct(r.late_ms, 99):.1f} "
            f"| {r.dropped_warnings} | {r.errors} | {'yes' if r.passed else 'no'} "
            f"| {r.other_cpu_s / r.window_s:.2f} |"
        )
    passing = [r for r in results if r.passed]
    lines.append("")
    if passing:
        best = max(passing, key=lambda r: r.sessions)
        per_core = best.sessions / best.cores
        lines.append(
            f"Largest N with p99 lag < {PASS_P99_MS:.0f} ms: **{best.sessions} sessions**, using "
            f"{best.cores:.2f} server cores → **{per_core:.0f} sessions per core** "
            f"(target ≥ {TARGET_PER_CORE}: {'met' if per_core >= TARGET_PER_CORE else 'not met'})."
        )
    else:
        lines.append(f"No step kept p99 lag < {PASS_P99_MS:.0f} ms.")
    return "\n".join(lines)


async def ramp(
    steps: list[int], seconds: float, warmup: float, budget_s: float,
    pipeline: str = "builtin", cpus: str | None = None,
) -> str:
    clip, source = speech_clip()
    frames = append_frames(clip)
    results: list[StepResult] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with rtgate_server(log_path, pipeline, cpus) as (proc, port):
            for n in steps:
                if time.monotonic() - began + seconds + 10 > budget_s:
                    print(f"(stopping before N={n}: time budget of {budget_s:.0f} s)", file=sys.stderr)
                    break
                print(f"N={n}: connecting…", file=sys.stderr, flush=True)
                result = await run_step(port, proc.pid, n, frames, seconds, warmup, log_path)
                results.append(result)
                print(
                    f"N={n}: p99 lag {result.pct(result.lags_ms, 99):.1f} ms, "
                    f"server {result.cores:.2f} cores, connect {result.connect_s:.1f} s",
                    file=sys.stderr, flush=True,
                )
                await wait_idle(port)
                if result.lags_ms and result.pct(result.lags_ms, 50) > 1000:
                    print("(saturated: stopping the ramp)", file=sys.stderr)
                    break
    return f"#### `--pipeline {pipeline}`\n\n" + markdown(results, source, seconds, warmup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="5,10,25,50,100,200,300,400",
                        help="comma-separated ramp of concurrent sessions")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="streaming time per step (≤ 20)")
    parser.add_argument("--warmup-seconds", type=float, default=4.0, help="start of each step not measured")
    parser.add_argument("--budget-seconds", type=float, default=290.0, help="stop the ramp past this")
    parser.add_argument("--no-responses", action="store_true",
                        help="create_response off: VAD and speech events only, no response audio")
    parser.add_argument("--quick", action="store_true", help="ramp 10,25,100 with 10 s steps (≤ 60 s)")
    parser.add_argument("--pipelines", default="builtin",
                        help="comma-separated server pipelines to ramp in turn: builtin, default")
    parser.add_argument("--server-cpus", metavar="LIST",
                        help="pin the server to these CPUs (taskset -c LIST) and this process to the others")
    args = parser.parse_args(argv)
    global SESSION_UPDATE
    SESSION_UPDATE = session_update(not args.no_responses)
    if args.quick:
        steps, seconds, warmup, budget = [10, 25, 100], 10.0, 3.0, 58.0
    else:
        steps = [int(s) for s in args.sessions.split(",")]
        seconds, warmup, budget = min(args.step_seconds, 20.0), args.warmup_seconds, args.budget_seconds
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs", file=sys.stderr)
    if args.server_cpus:
        server_cpus = {int(c) for c in args.server_cpus.split(",")}
        others = set(range(os.cpu_count() or 1)) - server_cpus
        if others:
            os.sched_setaffinity(0, others)
    for pipeline in args.pipelines.split(","):
        print(asyncio.run(ramp(steps, seconds, warmup, budget, pipeline, args.server_cpus)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

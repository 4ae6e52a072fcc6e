"""When does a spoken turn end? ``server_vad`` and ``semantic_vad`` against the previous build.

    python benchmarks/bench_turns.py [--quick] [--questions N] [--baseline REF | --baseline none]
        [--settings server_vad,low,medium,high,auto] [--json PATH]

``--quick`` (3.3 min on the 2-core VM): 2 questions, whole and paused, for server_vad,
high and auto on both builds. ``--questions 6`` with all five settings (120 turns) took
19 min; the full run (12 questions, 240 turns) about twice that.

**Servers.** Each build runs as ``python -m rtgate serve --host 127.0.0.1 --port P`` (the
default stack as the README starts it: Silero VAD, Smart Turn where the build has it,
Whisper tiny.en, SmolLM2-135M, espeak-ng), with this script's Python and ``PYTHONPATH``
set to the build's ``src/`` (benchmarks/builds.py): the working tree ("current") and a
``git worktree`` of ``--baseline`` (default ``b099b71``, the commit before the turn-end
model, whose ``semantic_vad`` is a silence window by eagerness). Both load before the
first turn and stay up; the order of builds alternates from one setting to the next.

**Speech.** Questions synthesised with ``espeak-ng -m`` (SSML) in six voices at 150-180
words a minute, resampled to 24 kHz and trimmed to their voiced part. Each question is
asked twice: *complete* (one breath) and *paused* (an SSML ``<break>`` of 400-800 ms at a
mid-sentence point, after a function word, where people hesitate before the next content
word: "I'd like to book a table for … two people"). The questions, voices and pause
lengths are fixed by ``--seed``; both builds hear the same audio.

**A turn** is one new session through the official ``openai`` SDK: ``session.update``
(audio out, 24 kHz PCM in and out, ``max_output_tokens`` 24, the turn detection of the
setting), then 300 ms of silence, the question, and silence until the first answer audio
(or ``--turn-timeout``), streamed in 20 ms chunks on a real-time schedule (chunk k leaves
at t0 + (k+1)·20 ms); the session is closed at the first answer audio.

* *end of speech*: when the chunk holding the last voiced sample was sent;
* *turn ended*: when the ``speech_stopped`` that ends the turn arrived, minus the end of
  speech (what the turn detector adds; the rest is STT, LLM and TTS);
* *first audio*: the first ``response.output_audio.delta`` of a response created after
  the last ``speech_stopped`` that ends past the end of the voice, minus the end of speech;
* *false cut-off* (paused questions): a ``speech_stopped`` whose ``audio_end_ms`` lies
  before the audio position where the second half starts (the turn ended inside the
  pause); *split* (complete questions): a turn ended more than ``TAIL_MS`` (250 ms)
  before the end of the voice.

Settings: ``server_vad`` (threshold 0.5, prefix 300 ms, silence 200 ms: the defaults) and
``semantic_vad`` with eagerness low, medium, high and auto. Reports per build and setting:
first-audio median and p90 (nearest rank) over complete and paused questions, false
cut-offs over the paused ones, splits over the complete ones.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builds import (
    Build,
    baseline_build,
    build_env,
    current_build,
    free_port,
    imported_from,
    wait_healthy,
)

RATE = 24_000
CHUNK_MS = 20
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
LEAD_MS = 300
VOICED = 0.01  # -40 dBFS
TAIL_MS = 250
"""A turn that ends less than this before the last voiced sample ends with the voice: the
VAD hears a decaying tail as quiet before it falls under -40 dBFS."""
DEFAULT_BASELINE = "b099b71"
SETTINGS = ("server_vad", "low", "medium", "high", "auto")
VOICES = (("en-us", 170), ("en-gb", 160), ("en+f3", 155), ("en+m3", 175), ("en+f2", 150), ("en-gb-scotland", 180))

QUESTIONS = [
    ("I would like to book a table for", "two people tonight."),
    ("Can you tell me the quickest way to the", "railway station?"),
    ("What is the best way to learn a", "new language?"),
    ("How long does it take to fly from London to", "New York?"),
    ("Could you recommend a good book about the", "history of science?"),
    ("What should I cook for dinner with", "eggs and rice?"),
    ("Why is the sky blue during the day and", "red at sunset?"),
    ("Please remind me to call my", "mother tomorrow at noon."),
    ("What are the main differences between", "cats and dogs?"),
    ("How do I reset the password of my", "email account?"),
    ("Which planet in our solar system has the", "most moons?"),
    ("Tell me a short story about a", "dragon who loves to read."),
]


@dataclass(frozen=True)
class Clip:
    text: str
    voice: str
    paused: bool
    pause_ms: int
    frames: tuple[str, ...]
    end_chunk: int
    """Index of the chunk holding the last voiced sample."""
    voice_end_ms: float
    """Audio position of the end of the voice (the session's audio clock)."""
    resume_ms: float | None
    """Audio position where the second half starts (paused clips)."""


def espeak(ssml: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-m", "-v", voice, "-s", str(speed), "-w", str(path), ssml],
                       check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    import soxr

    return np.asarray(soxr.resample(raw, rate, RATE), dtype=np.float32)


def make_clip(index: int, paused: bool, rng: random.Random) -> Clip:
    first, second = QUESTIONS[index]
    voice, speed = VOICES[index % len(VOICES)]
    pause_ms = rng.choice(range(400, 801, 50)) if paused else 0
    sep = f' <break time="{pause_ms}ms"/> ' if paused else " "
    audio = espeak(f"<speak>{first}{sep}{second}</speak>", voice, speed)
    loud = np.flatnonzero(np.abs(audio) > VOICED)
    audio = audio[loud[0] : loud[-1] + 1]
    audio = 0.5 * audio / np.abs(audio).max()
    resume = None
    if paused:  # the longest quiet run inside the voice is the break
        change = np.diff(np.concatenate([[0], (np.abs(audio) <= VOICED).astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
        if len(starts):
            resume = LEAD_MS + ends[np.argmax(ends - starts)] * 1000 / RATE
    lead = np.zeros(RATE * LEAD_MS // 1000, dtype=np.float32)
    signal = np.concatenate([lead, audio])
    end_chunk = (len(signal) - 1) // CHUNK_SAMPLES
    signal = np.pad(signal, (0, -len(signal) % CHUNK_SAMPLES))
    pcm = (signal.clip(-1, 1) * 32767).astype("<i2").reshape(-1, CHUNK_SAMPLES)
    frames = tuple(base64.b64encode(chunk.tobytes()).decode() for chunk in pcm)
    text = f"{first} … {second}" if paused else f"{first} {second}"
    return Clip(text, voice, paused, pause_ms, frames, end_chunk, LEAD_MS + len(audio) * 1000 / RATE, resume)


SILENT_FRAME = base64.b64encode(bytes(CHUNK_SAMPLES * 2)).decode()


# ---------------------------------------------------------------------- one turn


@dataclass
class Turn:
    build: str
    setting: str
    text: str
    voice: str
    paused: bool
    pause_ms: int
    first_audio_s: float | None = None
    detected_s: float | None = None
    """End of speech → the ``speech_stopped`` that ended the turn (arrival here)."""
    stops_ms: list[int] = field(default_factory=list)
    false_cut: bool = False
    split: bool = False
    error: str | None = None


def turn_detection(setting: str) -> dict[str, Any]:
    if setting == "server_vad":
        return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200}
    return {"type": "semantic_vad", "eagerness": setting}


async def ask(base_url: str, clip: Clip, setting: str, turn: Turn, timeout_s: float) -> Turn:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    speech_end: float | None = None
    answer: str | None = None
    got_audio = asyncio.Event()
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["audio"], "max_output_tokens": 24,
            "instructions": "Answer in one short sentence.",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": turn_detection(setting)},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}}},
        })

        async def listen() -> None:
            nonlocal answer
            final = False
            async for event in conn:
                if event.type == "input_audio_buffer.speech_stopped":
                    turn.stops_ms.append(event.audio_end_ms)
                    final = event.audio_end_ms >= clip.voice_end_ms - TAIL_MS
                    if final and speech_end is not None:
                        turn.detected_s = time.monotonic() - speech_end
                elif event.type == "response.created" and final:
                    answer = event.response.id
                elif event.type == "response.output_audio.delta" and answer and event.response_id == answer:
                    if speech_end is not None:
                        turn.first_audio_s = time.monotonic() - speech_end
                        got_audio.set()
                        return
                elif event.type == "error":
                    turn.error = event.error.code or event.error.message
        listener = asyncio.create_task(listen())
        t0 = time.monotonic()
        deadline = None
        k = 0
        while not got_audio.is_set():
            frame = clip.frames[k] if k < len(clip.frames) else SILENT_FRAME
            await conn.input_audio_buffer.append(audio=frame)
            if k == clip.end_chunk:
                speech_end = time.monotonic()
                deadline = speech_end + timeout_s
            if deadline is not None and time.monotonic() > deadline:
                break
            k += 1
            delay = t0 + (k + 1) * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(got_audio.wait(), delay)
        listener.cancel()
    if clip.paused and clip.resume_ms is not None:
        turn.false_cut = any(stop < clip.resume_ms for stop in turn.stops_ms)
    else:
        turn.split = any(stop < clip.voice_end_ms - TAIL_MS for stop in turn.stops_ms)
    return turn


# ---------------------------------------------------------------------- servers and report


def start(build: Build, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log_path = log_dir / f"{build.name}.log"
    print(f"{build.name}: {build.revision}, imports {imported_from(build)}", file=sys.stderr)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rtgate", "serve", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env=build_env(build))
    wait_healthy(proc, port, build.name, log_path)
    return proc, port


def rank(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarise(turns: list[Turn]) -> list[dict[str, Any]]:
    rows = []
    for build in dict.fromkeys(t.build for t in turns):
        for setting in dict.fromkeys(t.setting for t in turns):
            mine = [t for t in turns if t.build == build and t.setting == setting]
            if not mine:
                continue
            lat = [t.first_audio_s if t.first_audio_s is not None else math.inf for t in mine]
            detected = [t.detected_s if t.detected_s is not None else math.inf for t in mine]
            complete = [t.first_audio_s if t.first_audio_s is not None else math.inf
                        for t in mine if not t.paused]
            paused = [t for t in mine if t.paused]
            rows.append({
                "build": build, "setting": setting, "turns": len(mine),
                "p50_ms": 1000 * rank(lat, 0.5), "p90_ms": 1000 * rank(lat, 0.9),
                "complete_p50_ms": 1000 * rank(complete, 0.5),
                "detected_p50_ms": 1000 * rank(detected, 0.5), "detected_p90_ms": 1000 * rank(detected, 0.9),
                "false_cuts": sum(t.false_cut for t in paused), "paused": len(paused),
                "splits": sum(t.split for t in mine if not t.paused),
                "complete": len(complete),
                "timeouts": sum(t.first_audio_s is None for t in mine),
            })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| build | setting | turns | end of speech → first audio p50 / p90 (ms) | complete only p50 | "
          "end of speech → turn ended p50 / p90 | false cut-offs (paused) | splits (complete) | no answer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['build']} | {r['setting']} | {r['turns']} | {r['p50_ms']:.0f} / {r['p90_ms']:.0f} | "
              f"{r['complete_p50_ms']:.0f} | {r['detected_p50_ms']:.0f} / {r['detected_p90_ms']:.0f} | "
              f"{r['false_cuts']}/{r['paused']} "
              f"({100 * r['false_cuts'] / max(1, r['paused']):.0f} %) | {r['splits']}/{r['complete']} | "
              f"{r['timeouts']} |")


async def run(args: argparse.Namespace, builds: list[Build], log_dir: Path) -> list[Turn]:
    rng = random.Random(args.seed)
    count = args.questions
    indices = list(range(len(QUESTIONS)))
    rng.shuffle(indices)
    clips = [make_clip(i, paused, rng) for i in indices[:count] for paused in (False, True)]
    servers = {}
    try:
        for build in builds:
            servers[build.name] = start(build, log_dir)
            base_url = f"http://127.0.0.1:{servers[build.name][1]}/openai/v1"
            await ask(base_url, clips[0], "server_vad", Turn(build.name, "warm-up", "", "", False, 0), 5.0)
        turns: list[Turn] = []
        for s, setting in enumerate(args.settings):
            order = builds if s % 2 == 0 else builds[::-1]
            for build in order:
                base_url = f"http://127.0.0.1:{servers[build.name][1]}/openai/v1"
                for clip in clips:
                    turn = Turn(build.name, setting, clip.text, clip.voice, clip.paused, clip.pause_ms)
                    try:
                        turn = await ask(base_url, clip, setting, turn, args.turn_timeout)
                    except Exception as exc:  # a failed turn is reported, not fatal
                        turn.error = f"{type(exc).__name__}: {exc}"
                    first = f"{1000 * turn.first_audio_s:.0f} ms" if turn.first_audio_s else "none"
                    detected = f"{1000 * turn.detected_s:.0f} ms" if turn.detected_s else "none"
                    print(f"{build.name:8s} {setting:10s} {'paused' if clip.paused else 'whole ':6s} "
                          f"turn ended {detected:>8s} first audio {first:>8s} stops {turn.stops_ms} "
                          f"{'FALSE CUT ' if turn.false_cut else ''}{'SPLIT ' if turn.split else ''}"
                          f"{clip.voice}: {clip.text}", file=sys.stderr, flush=True)
                    turns.append(turn)
        return turns
    finally:
        for proc, _port in servers.values():
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="2 questions, each whole and paused; server_vad, high and auto (~3.5 min)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS),
                        help=f"how many of the {len(QUESTIONS)} questions (each asked whole and paused)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref of the previous build, or 'none'")
    parser.add_argument("--settings", default=None,
                        help=f"comma-separated, from {','.join(SETTINGS)} (default: all; --quick: "
                             "server_vad,high,auto)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--turn-timeout", type=float, default=8.0,
                        help="seconds after the end of speech without answer audio: no answer")
    parser.add_argument("--json", type=Path, help="write every turn and the summary here")
    args = parser.parse_args(argv)
    if args.settings is None:
        args.settings = "server_vad,high,auto" if args.quick else ",".join(SETTINGS)
    if args.quick:
        args.questions = min(args.questions, 2)
    args.questions = max(1, min(args.questions, len(QUESTIONS)))
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    for s in args.settings:
        if s not in SETTINGS:
            parser.error(f"--settings: {s!r} is not one of {', '.join(SETTINGS)}")
    print(f"# bench_turns: {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as tmp:
        log_dir = Path(tmp)
        current = current_build()
        if args.baseline == "none":
            turns = asyncio.run(run(args, [current], log_dir))
        else:
            with baseline_build(args.baseline) as baseline:
                turns = asyncio.run(run(args, [current, baseline], log_dir))
    rows = summarise(turns)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"summary": rows, "turns": [asdict(t) for t in turns]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Many spoken conversations at once: what each user waits for, against the previous build.

    python benchmarks/bench_conversations.py [--n 1,2,4,8] [--turns 3 | --duration S] [--one-session]
        [--baseline REF | --baseline none] [--serve-arg ARG ...] [--json PATH] [--quick]

**Servers.** Each build runs as ``python -m rtgate serve --host 127.0.0.1 --port P`` (the
default stack: Silero VAD, Whisper tiny.en, SmolLM2-135M, espeak-ng; extra options from
``--serve-arg``) in its own process, with this script's Python and ``PYTHONPATH`` set to
the build's ``src/``: the working tree ("current") and a ``git worktree`` of ``--baseline``
(default ``729dc2e``, the commit this round started from). The header prints which
``rtgate/__init__.py`` each build imports. Both servers load before the first step and stay
up; the steps alternate the builds (current first for the 1st, 3rd, … N, baseline first for
the others), so slow drift of the shared machine hits both. Each server first answers
``--warmup-turns`` unrecorded turns.

**Conversations.** A step runs N conversations at once on one server. Each is a loop of
turns through the official ``openai`` SDK (``AsyncOpenAI(...).realtime.connect(model=
"gpt-realtime")``, one client per conversation); every turn is a *new* session: wait for
``session.created`` (an ``error`` event instead, a close, a failed handshake or nothing in
30 s = **refused**),
send ``session.update`` (audio output, 24 kHz PCM in and out, short-answer instructions,
``turn_detection: {"type": "server_vad"}`` with the server's defaults: threshold 0.5,
prefix 300 ms, silence window 200 ms (``--turn-detection semantic_vad[:eagerness]`` for the
turn-end model instead, per build with ``--current-turn-detection`` /
``--baseline-turn-detection``); no ``max_output_tokens`` unless given: SmolLM2 often
ignores "answer briefly" and talks for up to its 512-token cap, over a minute of audio,
which is what a new user meets and what holds the model while others wait), then stream
500 ms of silence and one recorded question, then silence for as long as the session
lasts (a microphone keeps streaming). Audio goes in 20 ms chunks of 24 kHz PCM16 on an
absolute monotonic schedule: chunk k leaves at t0 + (k+1)·20 ms, when its last sample would
exist on a live microphone (a late send does not shift later ones). Conversation c starts
at a random offset in [0, ``--stagger``) and asks question (b + c + t·N) mod Q at its
turn t (b random), so concurrent speakers say different things; offsets, questions and gaps
come from a RNG seeded by ``--seed`` and N, the same for both builds. Each conversation
has ``--turns`` turns, or with ``--duration`` starts turns until that many seconds into the
step (and finishes the one under way).

**A call that goes on** (``--one-session``): every turn of a conversation in *one* session
instead, as a phone call or a call-centre agent keeps its session. The microphone streams
silence between the turns (the gap after the answer has played), and the conversation's
history, so the model's prompt, grows with every turn. A refusal at connection refuses all
of its turns; an unanswered turn ends the call.

**Questions.** Q = 12 short questions, synthesised once with ``espeak-ng -w`` in eight
voices (en-us, en-gb, en-gb-scotland, en+f2, en+f3, en+f4, en+m1, en+m3) at 140-190 words
a minute, resampled to 24 kHz (linear interpolation, as ``bench_load``) and trimmed to their
voiced part (first to last sample above -40 dBFS). Four have a hesitation: the two halves
are synthesised apart and joined by 150 ms of digital silence, below the 200 ms
``server_vad`` silence window, so the server should hear one turn. What the VAD hears as
quiet is longer than the digital gap (the first half's decay, a soft onset after it): with
rtgate's resampler and Silero, these four pauses read as 96-128 ms of quiet frames, while
"What is a quick recipe … for dinner tonight?" (en+f3) read as 224 ms and split in two
turns, so second halves start with a voiced sound. The report counts sessions whose speech
was heard as more than one ``input_audio_buffer.speech_started``.

**Per turn** (times are this process's monotonic clock):

* *end of speech*: the wall time the chunk holding the last voiced sample (> -40 dBFS) of
  the question was sent (after the SDK's send returned; ``bench_latency`` takes the
  sample's place on its send schedule: the two differ by less than one 20 ms chunk). As
  there, the VAD's silence window is not subtracted: it is part of what the user waits for.
* *first audio* = first ``response.output_audio.delta`` after the end of speech − end of
  speech. That delta's response is the turn's *answer*.
* *answer completion* = the answer's ``response.done`` − end of speech.
* *answer audio* = seconds of 24 kHz PCM16 in the answer's deltas.
* *stall* = how long a player that starts at the first delta and plays every delta as soon
  as the audio before it has played would wait for audio in the middle of the answer (a
  server that paces generation to playback must keep ahead of it). A turn with more than
  100 ms of stall is *stalled*.
* *status*: the answer's ``response.done`` status (and ``status_details`` reason or error
  code). With no audio after the end of speech, the first ``response.done`` after it that
  is not ``cancelled`` is the answer.
* Outcome: **answered** (audio came), **failed** (the answer ended ``failed`` with no audio),
  **unanswered** (no audio within ``--turn-timeout`` of the end of speech, 30 s by default,
  a ``completed`` answer with no audio, or the server closed the session first; the session
  is then closed), or **refused** (above).

The answer is then "played" in real time: the session (and its microphone) lasts until
max(first audio + answer audio + stall, ``response.done``), the session is closed, and the next
turn starts after a random gap of 0.5-1 s.

**Per build and N**: first-audio p50/p90/p99 over the turns that got a session, except
*failed* ones (which end with a notice, not silence), an unanswered turn counting as
infinitely late ("timeout"); percentiles are nearest-rank (the ⌈q·n⌉-th smallest), so with
few turns p99 is the worst turn. Answer completion p50/p90 over answered turns (it measures
generation speed only where the server generates ahead of playback; a server that paces
generation finishes with the audio, so compare it with the answer's length); answer audio
median; stalled turns. *Failed* in the table counts answers with status ``failed`` (with or
without audio); the reasons are listed below it. **Server cores** = user+system CPU time
of the server process and its descendants (``/proc/<pid>/stat``: utime, stime, cutime,
cstime; live descendants found by their parent pid) over the step's wall time, from its
start (conversations begin within ``--stagger`` of it) to the end of its last turn. Client
cores (this process) and other processes' cores (all of ``/proc/stat`` minus those two; the
idle build's server is in there) show how busy the 2-core machine was. Ratios are
current ÷ baseline for the same N.
A step **holds** N when every turn was answered (none unanswered, failed or refused) and
p90 ≤ 1 s; "largest N held" is also given per server core used (N ÷ server cores).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
CHUNK_S = CHUNK_MS / 1000
CHUNK_SAMPLES = RATE * CHUNK_MS // 1000
LEAD_MS = 500
HESITATION_MS = 150  # below server_vad's 200 ms silence window: still one turn
VOICED = 0.01  # -40 dBFS
GAP_S = (0.5, 1.0)
TARGET_P90_S = 1.0
STALL_S = 0.1  # a player that waits longer than this for the rest of an answer: an audible gap
DONE_CAP_S = 120.0  # after the first audio, the longest wait for the answer's response.done
CONNECT_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
INSTRUCTIONS = "You are a friendly voice assistant. Answer in one or two short sentences."


@dataclass(frozen=True)
class Question:
    parts: tuple[str, ...]
    """One text, or two halves joined by a hesitation."""
    voice: str
    speed: int
    """espeak-ng words per minute."""

    @property
    def text(self) -> str:
        return " … ".join(self.parts)


QUESTIONS = [
    Question(("What is the weather like in Paris today?",), "en-us", 170),
    Question(("How far away is the moon?",), "en+f3", 150),
    Question(("Can you recommend a good book to read?",), "en+m3", 180),
    Question(("What time does the bakery open", "on Sundays?"), "en-gb", 160),
    Question(("How do I boil an egg?",), "en+f2", 140),
    Question(("Tell me something fun", "about octopuses."), "en-us", 190),
    Question(("What is the capital of Australia?",), "en-gb-scotland", 165),
    Question(("Should I bring an umbrella", "this afternoon?"), "en+f4", 155),
    Question(("How many minutes are there in a day?",), "en+m1", 175),
    Question(("What is a good recipe", "with rice and beans?"), "en+f3", 160),
    Question(("Why is the sky blue?",), "en+m3", 145),
    Question(("Can you set a timer for ten minutes?",), "en-gb", 185),
]


# ---------------------------------------------------------------------- audio


@dataclass(frozen=True)
class Clip:
    question: Question
    frames: tuple[str, ...]
    """Base64 ``input_audio_buffer.append`` payloads: 500 ms of silence, then the question."""
    end_chunk: int
    """Index of the frame holding the last voiced sample."""
    speech_s: float


def espeak(text: str, voice: str, speed: int) -> np.ndarray:
    """``text`` spoken by the ``espeak-ng`` command, as float samples at 24 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    times = np.arange(int(len(raw) * RATE / rate)) / RATE
    return np.interp(times, np.arange(len(raw)) / rate, raw).astype(np.float32)


def voiced(samples: np.ndarray) -> np.ndarray:
    """``samples`` from the first to the last sample above -40 dBFS."""
    loud = np.flatnonzero(np.abs(samples) > VOICED)
    return samples[loud[0]: loud[-1] + 1] if loud.size else samples[:0]


def make_clip(question: Question) -> Clip:
    pause = np.zeros(RATE * HESITATION_MS // 1000, dtype=np.float32)
    halves = [voiced(espeak(part, question.voice, question.speed)) for part in question.parts]
    speech = np.concatenate([x for half in halves for x in (pause, half)][1:])
    lead = np.zeros(RATE * LEAD_MS // 1000, dtype=np.float32)
    audio = np.concatenate([lead, speech])
    audio = np.pad(audio, (0, -len(audio) % CHUNK_SAMPLES))
    pcm = (audio.clip(-1, 1) * 32767).astype("<i2").reshape(-1, CHUNK_SAMPLES)
    frames = tuple(base64.b64encode(chunk.tobytes()).decode() for chunk in pcm)
    end_chunk = (len(lead) + len(speech) - 1) // CHUNK_SAMPLES
    return Clip(question, frames, end_chunk, len(speech) / RATE)


SILENT_FRAME = base64.b64encode(bytes(CHUNK_SAMPLES * 2)).decode()


# ---------------------------------------------------------------------- builds and servers


@dataclass
class Server:
    build: Build
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    imported: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/openai/v1"


def start_server(build: Build, serve_args: Sequence[str], log_dir: Path) -> Server:
    port = free_port()
    log_path = log_dir / f"{build.name}.log"
    command = [sys.executable, "-m", "rtgate", "serve", "--host", "127.0.0.1", "--port", str(port),
               *serve_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=build_env(build))
    return Server(build, proc, port, log_path, imported_from(build))


LANE_COUNTERS = {
    "rtgate_scheduler_granted_total": "granted",
    "rtgate_scheduler_wait_seconds_total": "wait_s",
    "rtgate_scheduler_busy_seconds_total": "busy_s",
    "rtgate_scheduler_late_seconds_total": "late_s",
    "rtgate_scheduler_speculated_total": "speculated",
    "rtgate_scheduler_speculation_refused_total": "skipped",
    "rtgate_scheduler_yield_requests_total": "yields",
}


WORK_LINE = re.compile(
    r'rtgate_scheduler_work_(?P<kind>runs|busy_seconds|wait_seconds|late_seconds)_total'
    r'\{lane="(?P<lane>[^"]*)",work="(?P<work>[^"]*)"\} (?P<value>\S+)')
"""The scheduler's counters by kind of job (builds that have them)."""

STAGE_LINE = re.compile(
    r'rtgate_response_stage_seconds_(?P<kind>sum|count)\{profile="[^"]*",stage="(?P<stage>\w+)"\} (?P<value>\S+)')
"""The sum and count of the server's response stage histogram (builds that have it)."""

PROMPT_LINE = re.compile(r'rtgate_llm_prompt_tokens_total\{cached="(?P<cached>true|false)"\} (?P<value>\S+)')
"""The llama.cpp model's prompt tokens, cached or evaluated (builds that have them)."""


def metrics_urls(server: Server) -> list[str]:
    """Where the server's ``/metrics`` are: each worker's internal listener under
    ``--workers N`` (the public port reaches one worker at random), else the port."""
    found = re.search(r"workers on \S+ \(internal: ([^)]*)\)", server.log_path.read_text("utf-8", "replace"))
    if found:
        return [f"{url.strip()}/metrics" for url in found.group(1).split(",")]
    return [f"http://127.0.0.1:{server.port}/metrics"]


def lane_counters(server: Server) -> dict[str, dict[str, float]]:
    """The scheduler's per-lane counters from ``/metrics``, summed over the server's
    processes (empty for builds without them)."""
    lanes: dict[str, dict[str, float]] = {}
    for url in metrics_urls(server):
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            stage = STAGE_LINE.match(line)
            if stage is not None:  # per stage a pseudo-lane "stage:<name>": sum and count
                counters = lanes.setdefault(f"stage:{stage['stage']}", {})
                counters[stage["kind"]] = counters.get(stage["kind"], 0.0) + float(stage["value"])
                continue
            prompt = PROMPT_LINE.match(line)
            if prompt is not None:  # a pseudo-lane "llm:prompt": cached and evaluated tokens
                counters = lanes.setdefault("llm:prompt", {})
                kind = "cached" if prompt["cached"] == "true" else "evaluated"
                counters[kind] = counters.get(kind, 0.0) + float(prompt["value"])
                continue
            work = WORK_LINE.match(line)
            if work is not None:  # per kind of job a pseudo-lane "work:<lane>/<work>"
                counters = lanes.setdefault(f"work:{work['lane']}/{work['work']}", {})
                counters[work["kind"]] = counters.get(work["kind"], 0.0) + float(work["value"])
                continue
            name, _, rest = line.partition("{lane=\"")
            if name in LANE_COUNTERS and rest:
                lane, _, value = rest.partition("\"} ")
                counters = lanes.setdefault(lane, {})
                counters[LANE_COUNTERS[name]] = counters.get(LANE_COUNTERS[name], 0.0) + float(value)
    return lanes


def lane_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {lane: {k: v - before.get(lane, {}).get(k, 0.0) for k, v in values.items()}
            for lane, values in after.items()}


def health(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2) as reply:
        return dict(json.loads(reply.read()))


def wait_ready(server: Server) -> None:
    wait_healthy(server.proc, server.port, server.build.name, server.log_path)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


async def wait_idle(server: Server, within_s: float = 20.0) -> None:
    """Until the server reports no session (the last turns' sessions are closing)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if (await asyncio.to_thread(health, server)).get("sessions") == 0:
                return
        await asyncio.sleep(0.2)


def log_problems(server: Server) -> int:
    """Server log lines that report an error or a traceback."""
    lines = server.log_path.read_text(errors="replace").splitlines()
    return sum(("ERROR" in line or "Traceback" in line) for line in lines)


# ---------------------------------------------------------------------- CPU


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime+cutime+cstime of ``pid`` and of its live descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / CLK_TCK)
    family, total, frontier = {pid}, 0.0, [pid]
    while frontier:
        parent = frontier.pop()
        total += stats.get(parent, (0, 0.0))[1]
        children = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in family]
        family.update(children)
        frontier.extend(children)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (``/proc/stat``, all CPUs)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class CpuWindow:
    pid: int
    wall: float = 0.0
    server: float = 0.0
    client: float = 0.0
    machine: float = 0.0

    def read(self) -> tuple[float, float, float, float]:
        return time.monotonic(), tree_cpu_seconds(self.pid), time.process_time(), machine_busy_seconds()

    def __enter__(self) -> CpuWindow:
        self._start = self.read()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall, self.server, self.client, self.machine = (
            b - a for a, b in zip(self._start, self.read(), strict=True))


# ---------------------------------------------------------------------- one turn


@dataclass
class Turn:
    """What one question's session saw; times are ``time.monotonic()``."""

    speech_end: float | None = None
    first_audio: float | None = None
    done: float | None = None
    answer_id: str | None = None
    status: str | None = None
    reason: str | None = None
    audio_bytes: int = 0
    speech_starts: int = 0
    responses: int = 0
    errors: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    vad: list[str] = field(default_factory=list)
    """``started <audio_start_ms>`` and ``stopped <audio_end_ms>`` as the server sent them."""
    closed_by_server: bool = False
    late_max_s: float = 0.0
    played_until: float = 0.0
    """When a real-time player that started at the first delta runs out of audio."""
    stall_s: float = 0.0
    """Time that player waited for audio after the first delta."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def observe(self, event: Any, now: float) -> None:
        kind = event.type
        if kind == "response.output_audio.delta":
            self._audio(event.response_id, event.delta, now)
        elif kind == "response.done":
            self._done(event.response, now)
        elif kind == "input_audio_buffer.speech_started":
            self.speech_starts += 1
            self.vad.append(f"started {event.audio_start_ms}")
        elif kind == "input_audio_buffer.speech_stopped":
            self.vad.append(f"stopped {event.audio_end_ms}")
        elif kind == "response.created":
            self.responses += 1
        elif kind == "error":
            self.errors.append(error_code(event.error))

    def _audio(self, response_id: str, delta: str, now: float) -> None:
        if self.answer_id is None and self.speech_end is not None:
            self.answer_id, self.first_audio, self.played_until = response_id, now, now
            self.answered.set()
        if response_id == self.answer_id:
            size = len(base64.b64decode(delta))
            self.stall_s += max(0.0, now - self.played_until)
            self.played_until = max(self.played_until, now) + size / 2 / RATE
            self.audio_bytes += size

    def _done(self, response: Any, now: float) -> None:
        reason = status_reason(response.status_details)
        self.statuses.append(f"{response.status}: {reason}" if reason else str(response.status))
        if self.answer_id is None and self.speech_end is not None and response.status != "cancelled":
            self.answer_id = response.id  # an answer with no audio
        if response.id == self.answer_id:
            self.done, self.status, self.reason = now, response.status, reason
            self.answered.set()
            self.finished.set()

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / 2 / RATE


def error_code(error: Any) -> str:
    return str(getattr(error, "code", None) or getattr(error, "type", None) or error)


def status_reason(details: Any) -> str | None:
    if details is None:
        return None
    error = details.error
    return details.reason or (error and (error.code or error.type or error.message)) or None


@dataclass
class TurnRecord:
    build: str
    n: int
    conversation: int
    turn: int
    question: str
    voice: str
    hesitation: bool
    outcome: str
    """answered, failed, unanswered or refused."""
    first_audio_s: float | None = None
    completion_s: float | None = None
    audio_s: float = 0.0
    stall_s: float = 0.0
    status: str | None = None
    reason: str | None = None
    speech_starts: int = 0
    responses: int = 0
    errors: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    vad: list[str] = field(default_factory=list)
    started_s: float = 0.0
    """Since the step began."""
    client_late_max_ms: float = 0.0


def turn_detection(spec: str) -> dict[str, Any]:
    """``server_vad`` or ``semantic_vad[:eagerness]`` as the session's ``turn_detection``."""
    kind, _, eagerness = spec.partition(":")
    if kind == "server_vad" and not eagerness:
        return {"type": "server_vad"}
    if kind == "semantic_vad" and eagerness in ("", "low", "medium", "high", "auto"):
        return {"type": "semantic_vad"} | ({"eagerness": eagerness} if eagerness else {})
    raise argparse.ArgumentTypeError(f"not server_vad or semantic_vad[:eagerness]: {spec!r}")


def session_config(args: argparse.Namespace, build: str = "current") -> dict[str, Any]:
    pcm = {"type": "audio/pcm", "rate": RATE}
    detection = args.turn_detection_of.get(build, args.turn_detection)
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": args.instructions,
        "audio": {
            "input": {"format": pcm, "turn_detection": turn_detection(detection)},
            "output": {"format": pcm},
        },
    } | ({} if args.max_output_tokens is None else {"max_output_tokens": args.max_output_tokens})


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def wait_until(event: asyncio.Event, deadline: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return False
    return True


async def microphone(conn: Any, clip: Clip, t0: float, turn: Turn) -> None:
    """Send chunk k at t0 + (k+1)·20 ms: the clip, then silence until cancelled."""
    k = 0
    with contextlib.suppress(Exception):  # the session closed under us: the turn is over
        while True:
            due = t0 + (k + 1) * CHUNK_S
            await sleep_until(due)
            turn.late_max_s = max(turn.late_max_s, time.monotonic() - due)
            frame = clip.frames[k] if k < len(clip.frames) else SILENT_FRAME
            await conn.input_audio_buffer.append(audio=frame)
            if k == clip.end_chunk:
                turn.speech_end = time.monotonic()
            k += 1


async def listen(conn: Any, current: Callable[[], Turn]) -> None:
    """Hand every server event to the turn under way (``current()``) until the session ends."""
    with contextlib.suppress(Exception):
        async for event in conn:
            current().observe(event, time.monotonic())
    turn = current()
    turn.closed_by_server = True
    turn.answered.set()
    turn.finished.set()


async def hear_answer(clip: Clip, turn: Turn, t0: float, timeout_s: float) -> None:
    """Wait for the answer to ``clip`` (spoken from ``t0``) and for it to finish playing."""
    await wait_until(turn.answered, t0 + (clip.end_chunk + 1) * CHUNK_S + timeout_s)
    if turn.first_audio is None:
        return
    await wait_until(turn.finished, turn.first_audio + DONE_CAP_S)
    await sleep_until(max(turn.played_until, turn.done or 0.0))


async def play(conn: Any, clip: Clip, turn: Turn, timeout_s: float) -> None:
    """Speak ``clip``, wait for the answer and for it to finish playing."""
    t0 = time.monotonic()
    tasks = [asyncio.create_task(microphone(conn, clip, t0, turn)),
             asyncio.create_task(listen(conn, lambda: turn))]
    try:
        await hear_answer(clip, turn, t0, timeout_s)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def outcome(turn: Turn) -> str:
    if turn.first_audio is not None:
        return "answered"
    return "failed" if turn.status == "failed" else "unanswered"


class Refused(Exception):
    """The session did not open: ``reason`` (an error code, an event type or an exception
    name) and the error's message, if any."""

    def __init__(self, reason: str, errors: list[str]) -> None:
        super().__init__(reason)
        self.reason, self.errors = reason, errors

    def refuse(self, record: TurnRecord) -> TurnRecord:
        return dataclasses.replace(record, outcome="refused", reason=self.reason, errors=self.errors)


async def open_session(stack: contextlib.AsyncExitStack, client: Any, args: argparse.Namespace,
                       build: str) -> Any:
    """A configured session of ``client`` (an ``AsyncOpenAI``), closed with ``stack``;
    :class:`Refused` when it does not open."""
    try:
        conn = await stack.enter_async_context(client.realtime.connect(model="gpt-realtime"))
        first = await asyncio.wait_for(conn.recv(), CONNECT_TIMEOUT_S)
    except Exception as exc:  # whatever stops a session from opening is a refusal to the user
        raise Refused(type(exc).__name__, []) from exc
    if first.type == "error":
        raise Refused(error_code(first.error), [str(first.error.message)])
    if first.type != "session.created":
        raise Refused(first.type, [])
    await conn.session.update(session=session_config(args, build))
    return conn


async def ask(client: Any, clip: Clip, args: argparse.Namespace, record: TurnRecord) -> TurnRecord:
    """One turn in a new session of ``client``; fills ``record``."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            conn = await open_session(stack, client, args, record.build)
        except Refused as refusal:
            return refusal.refuse(record)
        turn = Turn()
        await play(conn, clip, turn, args.turn_timeout)
    return finish(record, turn)


async def talk(client: Any, clips: list[Clip], gaps_s: list[float], args: argparse.Namespace,
               records: list[TurnRecord], keep_going: Callable[[], bool]) -> None:
    """``--one-session``: every turn of a conversation in one session of ``client``, the
    microphone streaming silence between them; fills ``records`` (one per turn, in order).

    A refusal at the start refuses every turn; a session the server closes leaves the
    turns not asked yet out (their records stay unset)."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            conn = await open_session(stack, client, args, records[0].build)
        except Refused as refusal:
            records[:] = [refusal.refuse(r) for r in records]
            return
        turn = Turn()
        listener = asyncio.create_task(listen(conn, lambda: turn))
        mic: asyncio.Task[None] | None = None
        try:
            for t, clip in enumerate(clips):
                if t:
                    await asyncio.sleep(gaps_s[t])  # the previous turn's microphone streams silence
                if not keep_going() or listener.done():
                    break
                turn = Turn()
                t0 = time.monotonic()
                if mic is not None:
                    mic.cancel()
                mic = asyncio.create_task(microphone(conn, clip, t0, turn))
                await hear_answer(clip, turn, t0, args.turn_timeout)
                records[t] = finish(records[t], turn)
                print(describe(records[t]), file=sys.stderr, flush=True)
                if turn.first_audio is None:
                    break  # an unanswered turn ends the call
        finally:
            for task in (mic, listener):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (mic, listener) if t is not None), return_exceptions=True)


def finish(record: TurnRecord, turn: Turn) -> TurnRecord:
    end = turn.speech_end
    return dataclasses.replace(
        record,
        outcome=outcome(turn),
        first_audio_s=None if turn.first_audio is None or end is None else turn.first_audio - end,
        completion_s=None if turn.done is None or end is None else turn.done - end,
        audio_s=turn.audio_s, stall_s=turn.stall_s, status=turn.status,
        reason=turn.reason or ("closed by the server" if turn.closed_by_server and not turn.done else None),
        speech_starts=turn.speech_starts, responses=turn.responses, errors=turn.errors,
        statuses=turn.statuses, vad=turn.vad, client_late_max_ms=turn.late_max_s * 1000,
    )


# ---------------------------------------------------------------------- conversations and steps


@dataclass
class Plan:
    """One conversation's schedule, the same for every build."""

    conversation: int
    offset_s: float
    first_question: int
    gaps_s: list[float]


def plans(n: int, turns: int, args: argparse.Namespace) -> list[Plan]:
    rng = random.Random(f"{args.seed}/{n}")
    base = rng.randrange(len(QUESTIONS))
    return [Plan(c, rng.uniform(0, args.stagger), base + c, [rng.uniform(*GAP_S) for _ in range(turns)])
            for c in range(n)]


def describe(record: TurnRecord) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value * 1000:.0f} ms"
    detail = record.reason or ""
    if record.outcome == "answered":
        detail = (f"first audio {ms(record.first_audio_s)}, done {ms(record.completion_s)}, "
                  f"{record.audio_s:.1f} s audio, stalled {ms(record.stall_s)}")
    return (f"  {record.build:<8} N={record.n} c{record.conversation} t{record.turn} "
            f"{record.voice:<14} {record.outcome:<10} {detail}")


async def converse(server: Server, n: int, plan: Plan, clips: list[Clip], args: argparse.Namespace,
                   step_start: float) -> list[TurnRecord]:
    await sleep_until(step_start + plan.offset_s)
    records: list[TurnRecord] = []
    async with new_client(server) as client:
        if args.one_session:
            turns = args.turns if not args.duration else 10_000
            clips_asked = [clips[(plan.first_question + t * n) % len(clips)] for t in range(turns)]
            records = [TurnRecord(server.build.name, n, plan.conversation, t, clip.question.text,
                                  clip.question.voice, len(clip.question.parts) > 1, outcome="",
                                  started_s=0.0) for t, clip in enumerate(clips_asked)]
            def keep_going() -> bool:
                return not args.duration or time.monotonic() < step_start + args.duration
            await talk(client, clips_asked, plan.gaps_s, args, records, keep_going)
            for r in records:
                if r.outcome == "refused":
                    print(describe(r), file=sys.stderr, flush=True)
            return [r for r in records if r.outcome]
        for t, gap in enumerate(plan.gaps_s):
            if args.duration and time.monotonic() >= step_start + args.duration:
                break
            if t:
                await asyncio.sleep(gap)
            clip = clips[(plan.first_question + t * n) % len(clips)]
            record = TurnRecord(server.build.name, n, plan.conversation, t, clip.question.text,
                                clip.question.voice, len(clip.question.parts) > 1, outcome="",
                                started_s=time.monotonic() - step_start)
            record = await ask(client, clip, args, record)
            print(describe(record), file=sys.stderr, flush=True)
            records.append(record)
    return records


def new_client(server: Server) -> Any:
    """The official SDK's client for ``server`` (an app's one client; a session per question)."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0)


@dataclass
class Step:
    build: str
    n: int
    records: list[TurnRecord]
    cpu: CpuWindow
    lanes: dict[str, dict[str, float]] = field(default_factory=dict)
    """Scheduler counters over the step, per lane (builds with a scheduler only)."""

    def latencies(self) -> list[float]:
        return latencies(self.records)

    def completions(self) -> list[float]:
        return [r.completion_s for r in self.records
                if r.outcome == "answered" and r.completion_s is not None]

    @property
    def stalled(self) -> int:
        return sum(r.stall_s > STALL_S for r in self.records)

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.records)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.records)

    @property
    def cores(self) -> float:
        return self.cpu.server / self.cpu.wall if self.cpu.wall else math.nan

    @property
    def holds(self) -> bool:
        every_turn = self.records and self.count("answered") == len(self.records) and not self.failed
        return bool(every_turn) and percentile(self.latencies(), 90) <= TARGET_P90_S


async def run_step(server: Server, n: int, clips: list[Clip], args: argparse.Namespace) -> Step:
    turns = args.turns if not args.duration else 10_000
    print(f"{server.build.name}: N={n}", file=sys.stderr, flush=True)
    before = lane_counters(server)
    with CpuWindow(server.proc.pid) as cpu:
        start = time.monotonic()
        per_conversation = await asyncio.gather(
            *(converse(server, n, plan, clips, args, start) for plan in plans(n, turns, args)))
    await wait_idle(server)
    lanes = lane_delta(before, lane_counters(server))
    return Step(server.build.name, n, [r for rs in per_conversation for r in rs], cpu, lanes)


async def warm_up(server: Server, clips: list[Clip], args: argparse.Namespace) -> None:
    async with new_client(server) as client:
        for t in range(args.warmup_turns):
            clip = clips[t % len(clips)]
            record = TurnRecord(server.build.name, 0, 0, t, clip.question.text, clip.question.voice, False,
                                outcome="")
            record = await ask(client, clip, args, record)
            print(describe(record).replace("N=0", "warm-up"), file=sys.stderr, flush=True)
            await asyncio.sleep(GAP_S[0])


async def run_all(servers: list[Server], clips: list[Clip], args: argparse.Namespace) -> list[Step]:
    for server in servers:
        await warm_up(server, clips, args)
    steps = []
    for i, n in enumerate(args.n):
        for server in servers if i % 2 == 0 else servers[::-1]:
            steps.append(await run_step(server, n, clips, args))
    return steps


# ---------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the ⌈q/100·n⌉-th smallest value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fmt_s(value: float) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "timeout"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def fmt_ratio(current: float, baseline: float) -> str:
    if not all(math.isfinite(v) for v in (current, baseline)) or baseline == 0:
        return "—"
    return f"{current / baseline:.2f}×"


def step_row(step: Step) -> str:
    lat, done = step.latencies(), step.completions()
    audio = [r.audio_s for r in step.records if r.outcome == "answered"]
    cpu = step.cpu
    other = max(0.0, cpu.machine - cpu.server - cpu.client)
    return (f"| {step.build} | {step.n} | {len(step.records)} | {fmt_s(percentile(lat, 50))} "
            f"| {fmt_s(percentile(lat, 90))} | {fmt_s(percentile(lat, 99))} | {step.count('unanswered')} "
            f"| {step.count('refused')} | {step.failed} | {fmt_s(percentile(done, 50))} "
            f"| {fmt_s(percentile(done, 90))} | {median(audio):.1f} | {step.stalled} | {step.cores:.2f} "
            f"| {cpu.client / cpu.wall:.2f} | {other / cpu.wall:.2f} "
            f"| {'yes' if step.holds else 'no'} |")


def median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.nan


def ratio_rows(steps: list[Step]) -> list[str]:
    by_key = {(s.build, s.n): s for s in steps}
    rows = []
    for n in sorted({s.n for s in steps}):
        cur, base = by_key.get(("current", n)), by_key.get(("baseline", n))
        if cur is None or base is None:
            continue
        cells = [fmt_ratio(percentile(cur.latencies(), q), percentile(base.latencies(), q))
                 for q in (50, 90, 99)]
        cells += [fmt_ratio(percentile(cur.completions(), q), percentile(base.completions(), q))
                  for q in (50, 90)]
        cells.append(fmt_ratio(cur.cores, base.cores))
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return rows


def capacity_line(build: str, steps: list[Step]) -> str:
    held = [s for s in steps if s.build == build and s.holds]
    if not held:
        return f"- {build}: no N held (every turn answered, p90 ≤ {TARGET_P90_S:.0f} s)."
    best = max(held, key=lambda s: s.n)
    return (f"- {build}: largest N held (every turn answered, p90 ≤ {TARGET_P90_S:.0f} s): **{best.n}**, "
            f"at {best.cores:.2f} server cores → **{best.n / best.cores:.1f} conversations per core**.")


def notes(steps: list[Step], servers: list[Server]) -> list[str]:
    records = [r for s in steps for r in s.records]
    reasons = Counter(f"{r.build}: {r.reason}" for r in records if r.status == "failed")
    refusals = Counter(f"{r.build}: {r.reason}" for r in records if r.outcome == "refused")
    split = [r for r in records if r.speech_starts > 1]
    late = max((r.client_late_max_ms for r in records), default=0.0)
    lines = [
        f"Failed answers' reasons: {dict(reasons) or 'none'}. Refusals: {dict(refusals) or 'none'}.",
        f"Sessions heard as more than one speech start: {len(split)} of {len(records)} "
        f"({sum(r.hesitation for r in split)} of them questions with a {HESITATION_MS} ms hesitation).",
        f"Client: latest 20 ms chunk {late:.0f} ms behind its schedule.",
        "Server log lines with ERROR or Traceback: "
        + ", ".join(f"{s.build.name} {log_problems(s)}" for s in servers) + ".",
    ]
    for step in steps:
        first = [r for r in step.records if r.turn == 0]
        later = [r for r in step.records if r.turn > 0]
        if step.n > 1 and first and later:
            lines.append(f"First turns against later turns, {step.build} N={step.n}: first audio p50 / p90 "
                         + " against ".join(turn_split(rs) for rs in (first, later))
                         + f" (the first turns of all {step.n} conversations end within a few seconds)")
        if step.lanes:
            lines.append(f"Scheduler, {step.build} N={step.n}: " + "; ".join(
                f"{lane} {v.get('granted', 0):.0f} runs, busy {v.get('busy_s', 0):.1f} s, mean wait "
                f"{1000 * v.get('wait_s', 0) / max(v.get('granted', 0), 1):.0f} ms, late "
                f"{v.get('late_s', 0):.1f} s, speculation {v.get('speculated', 0):.0f} run / "
                f"{v.get('skipped', 0):.0f} skipped, {v.get('yields', 0):.0f} yields"
                for lane, v in sorted(step.lanes.items()) if v.get("granted", 0)))
        works = {lane.removeprefix("work:"): v for lane, v in step.lanes.items()
                 if lane.startswith("work:") and v.get("runs", 0)}
        if works:
            lines.append(f"Scheduler by job, {step.build} N={step.n}: " + "; ".join(
                f"{work} {v['runs']:.0f} runs, busy {v.get('busy_seconds', 0):.1f} s, mean wait "
                f"{1000 * v.get('wait_seconds', 0) / v['runs']:.0f} ms, late {v.get('late_seconds', 0):.1f} s"
                for work, v in sorted(works.items())))
        prompt = step.lanes.get("llm:prompt", {})
        if prompt.get("cached", 0) + prompt.get("evaluated", 0):
            total = prompt.get("cached", 0) + prompt.get("evaluated", 0)
            lines.append(f"LLM prompt tokens, {step.build} N={step.n}: {total:.0f}, of them "
                         f"{prompt.get('evaluated', 0):.0f} evaluated and {prompt.get('cached', 0):.0f} "
                         f"({100 * prompt.get('cached', 0) / total:.0f} %) from the slots' prompt cache")
        stages = {lane.removeprefix("stage:"): v for lane, v in step.lanes.items() if lane.startswith("stage:")}
        if any(v.get("count", 0) for v in stages.values()):
            lines.append(f"Response stages (mean from the turn's commit), {step.build} N={step.n}: " + ", ".join(
                f"{stage} {1000 * v.get('sum', 0) / max(v.get('count', 0), 1):.0f} ms ({v.get('count', 0):.0f})"
                for stage, v in stages.items() if v.get("count", 0)))
    return lines


def latencies(records: Sequence[TurnRecord]) -> list[float]:
    """First audio per turn with a session; unanswered = infinitely late; failed left out."""
    return [math.inf if r.first_audio_s is None else r.first_audio_s
            for r in records if r.outcome in ("answered", "unanswered")]


def turn_split(records: Sequence[TurnRecord]) -> str:
    """First audio p50 / p90 of ``records`` (answered and unanswered turns), and how many."""
    values = latencies(records)
    if not values:
        return "none"
    return f"{fmt_s(percentile(values, 50))} / {fmt_s(percentile(values, 90))} ({len(values)} turns)"


def header(servers: list[Server], clips: list[Clip], args: argparse.Namespace) -> list[str]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    speech = [c.speech_s for c in clips]
    pace = f"{args.duration:g} s per step" if args.duration else f"{args.turns} turn(s) per conversation"
    lines = [
        "### Conversations: N spoken turn loops at once (default stack, "
        + ("one session per conversation)" if args.one_session else "a new session per question)"),
        "",
        f"Date: {args.started_at}. Machine: {cpu_model}, {os.cpu_count()} CPUs "
        f"(nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at the end.",
    ]
    lines += [f"- {s.build.name}: {s.build.revision} (rtgate from `{s.imported}`)"
              + (f", with `{' '.join(s.build.serve_args)}`" if s.build.serve_args else "")
              + f"; turn detection `{args.turn_detection_of.get(s.build.name, args.turn_detection)}`"
              for s in servers]
    lines += [
        "- serve: `" + " ".join(["python -m rtgate serve --host 127.0.0.1 --port P", *args.serve_arg]) + "`",
        f"- {len(clips)} questions ({min(speech):.1f}-{max(speech):.1f} s of speech, "
        f"{sum(len(c.question.parts) > 1 for c in clips)} with a {HESITATION_MS} ms hesitation); {pace}; "
        f"starts staggered over {args.stagger:g} s; gap {GAP_S[0]}-{GAP_S[1]} s; "
        f"turn timeout {args.turn_timeout:.0f} s; "
        f"max_output_tokens {args.max_output_tokens or 'not sent'}; seed {args.seed}.",
        "",
    ]
    return lines


def report(steps: list[Step], servers: list[Server], clips: list[Clip], args: argparse.Namespace) -> str:
    lines = header(servers, clips, args)
    lines += [
        "| build | N | turns | first audio p50 | p90 | p99 | unanswered | refused | failed "
        "| answer done p50 | p90 | answer audio s (median) | stalled | server cores | client cores "
        "| other cores | held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        *(step_row(s) for s in sorted(steps, key=lambda s: (s.build != "current", s.n))),
    ]
    ratios = ratio_rows(steps)
    if ratios:
        lines += ["", "Current ÷ baseline:", "",
                  "| N | first audio p50 | p90 | p99 | answer done p50 | p90 | server cores |",
                  "|---:|---:|---:|---:|---:|---:|---:|", *ratios]
    lines += ["", *(capacity_line(s.build.name, steps) for s in servers), "", *notes(steps, servers)]
    return "\n".join(lines)


def write_json(path: Path, steps: list[Step], text: str) -> None:
    payload = {
        "report": text,
        "steps": [{"build": s.build, "n": s.n, "window_s": s.cpu.wall, "server_cpu_s": s.cpu.server,
                   "client_cpu_s": s.cpu.client, "machine_cpu_s": s.cpu.machine} for s in steps],
        "turns": [dataclasses.asdict(r) for s in steps for r in s.records],
    }
    path.write_text(json.dumps(payload, indent=1))


# ---------------------------------------------------------------------- main


async def measure(builds: list[Build], args: argparse.Namespace) -> str:
    print(f"synthesising {len(QUESTIONS)} questions …", file=sys.stderr, flush=True)
    clips = [make_clip(q) for q in QUESTIONS]
    with contextlib.ExitStack() as stack:
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = str(args.log_dir)
        else:
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="rtgate-conversations-"))
        servers: list[Server] = []
        try:
            for build in builds:
                servers.append(start_server(build, [*args.serve_arg, *build.serve_args], Path(log_dir)))
            print("loading models …", file=sys.stderr, flush=True)
            for server in servers:
                await asyncio.to_thread(wait_ready, server)
            steps = await run_all(servers, clips, args)
            text = report(steps, servers, clips, args)
        finally:
            for server in servers:
                stop_server(server)
    if args.json:
        write_json(args.json, steps, text)
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1,2,4,8",
                        help="comma-separated conversations at once (default 1,2,4,8)")
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation and N (default 3)")
    parser.add_argument("--duration", type=float, default=None,
                        help="instead of --turns: start turns for this many seconds per N")
    parser.add_argument("--baseline", default="729dc2e",
                        help="git ref of the previous build, 'current' (this tree again: compare "
                             "settings with --baseline-serve-arg), or 'none'")
    parser.add_argument("--baseline-serve-arg", action="append", default=[], metavar="ARG",
                        help="extra `rtgate serve` argument for the baseline only (repeatable); with "
                             "--baseline current and --current-serve-arg, one run compares two "
                             "settings of the same code, e.g. --current-serve-arg=--workers "
                             "--current-serve-arg=2 --baseline-serve-arg=--workers "
                             "--baseline-serve-arg=1")
    parser.add_argument("--current-serve-arg", action="append", default=[], metavar="ARG",
                        help="extra `rtgate serve` argument for the current build only (repeatable)")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                        help="extra `rtgate serve` argument for both builds (repeatable; "
                             "--serve-arg=--max-sessions --serve-arg=8)")
    parser.add_argument("--turn-detection", default="server_vad", metavar="SPEC",
                        help="the sessions' turn detection: server_vad (default) or "
                             "semantic_vad[:low|medium|high|auto]")
    parser.add_argument("--current-turn-detection", default=None, metavar="SPEC",
                        help="--turn-detection for the current build only (with --baseline current: "
                             "compare two turn detections of the same code in one run)")
    parser.add_argument("--baseline-turn-detection", default=None, metavar="SPEC",
                        help="--turn-detection for the baseline only")
    parser.add_argument("--turn-timeout", type=float, default=30.0,
                        help="seconds after the end of speech before a turn is unanswered (default 30)")
    parser.add_argument("--one-session", action="store_true",
                        help="every turn of a conversation in one session (a call that goes on: "
                             "the history grows), not a new session per question")
    parser.add_argument("--stagger", type=float, default=3.0,
                        help="conversations start over this many seconds (default 3)")
    parser.add_argument("--warmup-turns", type=int, default=1, help="unrecorded turns per server first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instructions", default=INSTRUCTIONS, help="session instructions")
    parser.add_argument("--max-output-tokens", default=None, type=lambda v: v if v == "inf" else int(v),
                        help="session max_output_tokens, an integer or 'inf' (default: not sent, the "
                             "server's default; 60 as bench_latency makes turns far shorter)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write raw per-turn records")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="keep each server's log there as BUILD.log (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true",
                        help="N = 1,2, one turn each, max_output_tokens 60, no baseline (≈ 1 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.turns, args.baseline, args.max_output_tokens = "1,2", 1, "none", 60
    args.n = [int(v) for v in args.n.split(",")]
    args.turn_detection_of = {build: spec for build, spec in (("current", args.current_turn_detection),
                                                              ("baseline", args.baseline_turn_detection))
                              if spec is not None}
    for spec in (args.turn_detection, *args.turn_detection_of.values()):
        try:
            turn_detection(spec)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    if shutil.which("espeak-ng") is None:
        print("bench_conversations: needs the espeak-ng command (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        current = current_build()
        builds = [dataclasses.replace(current, serve_args=tuple(args.current_serve_arg))]
        if args.baseline.lower() == "current":
            builds.append(dataclasses.replace(current, name="baseline",
                                              serve_args=tuple(args.baseline_serve_arg)))
        elif args.baseline.lower() != "none":
            build = stack.enter_context(baseline_build(args.baseline))
            builds.append(dataclasses.replace(build, serve_args=tuple(args.baseline_serve_arg)))
        print(asyncio.run(measure(builds, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

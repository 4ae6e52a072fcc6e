"""Benchmark ``rtgate migrate check`` on a generated ~100k-line mixed-language tree.

Usage: ``python benchmarks/bench_migrate.py [--lines 100000] [--cpus 2] [--keep DIR]``

It generates Python, JavaScript, TypeScript, C#, Java, Go, JSON and YAML files (about 5%
of them carry Preview-era patterns), pins the process to ``--cpus`` CPUs when the OS
allows it, and reports for each measurement the wall time, files/s and lines/s:

* ``read``      — baseline: read every file's bytes (the I/O floor);
* ``grep``      — baseline: ``grep -r -c realtime`` over the tree (if grep exists);
* ``check``     — ``rtgate migrate check`` in-process (discovery, scan, report);
* ``check-j1``  — the same in a single process (no worker pool);
* ``check-cli`` — the same through ``python -m rtgate.migrate`` (start-up included);
* ``fix``       — ``--fix`` on a copy (parse-back with compile()/tree-sitter included).

The clean code names GA events other than the GA names of the Preview events in the
Preview blocks: a file that names both a Preview event and its GA name is not reported
(the code handles both), which would leave the rename path unmeasured.

Ratios are against the ``read`` baseline. The issue's target is under 10 s for 100k lines
on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rtgate.migrate.check import run_check
from rtgate.migrate.report import render_json

PY_CLEAN = '''def handler_{i}(event, state):
    """Handle one event of kind {i}."""
    if event.type == "response.output_audio_transcript.delta":
        state.text.append(event.delta)
    elif event.type == "response.done":
        state.done = True
    return state

'''
PY_PREVIEW = """async def run_{i}(client):
    async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        await conn.session.update(session={{"modalities": ["text"], "voice": "alloy"}})
        async for event in conn:
            if event.type == "response.text.delta":
                print(event.delta)

"""
JS_CLEAN = """export function handle{i}(event, state) {{
  switch (event.type) {{
    case "response.output_text.delta":
      state.text.push(event.delta);
      break;
    default:
      break;
  }}
  return state;
}}

"""
JS_PREVIEW = """const ws{i} = new WebSocket(url, {{ headers: {{ "OpenAI-Beta": "realtime=v1" }} }});
ws{i}.on("message", (raw) => {{
  const e = JSON.parse(raw);
  if (e.type === "response.audio.delta") play(e.delta);
}});
ws{i}.send(JSON.stringify({{ type: "session.update", session: {{ voice: "verse" }} }}));

"""
CS_CLEAN = """    public static int Compute{i}(int x)
    {{
        var total = 0;
        for (var k = 0; k < x; k++) {{ total += k * {i}; }}
        return total;
    }}

"""
CS_PREVIEW = """    static readonly string Url{i} =
        "wss://r.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=d";

"""
JAVA_CLEAN = """    static int compute{i}(int x) {{
        int total = 0;
        for (int k = 0; k < x; k++) {{ total += k; }}
        return total;
    }}

"""
GO_CLEAN = """func compute{i}(x int) int {{
	total := 0
	for k := 0; k < x; k++ {{
		total += k
	}}
	return total
}}

"""
LANGS = [
    ("py", PY_CLEAN, PY_PREVIEW, "", ""),
    ("js", JS_CLEAN, JS_PREVIEW, "", ""),
    ("ts", JS_CLEAN, JS_PREVIEW, "", ""),
    ("cs", CS_CLEAN, CS_PREVIEW, "class C {\n", "}\n"),
    ("java", JAVA_CLEAN, JAVA_CLEAN, "class C {\n", "}\n"),
    ("go", GO_CLEAN, GO_CLEAN, "package main\n\n", ""),
]


def generate(root: Path, target_lines: int, seed: int = 6) -> tuple[int, int]:
    """Write the tree; return (files, lines)."""
    rng = random.Random(seed)
    files = lines = 0
    index = 0
    while lines < target_lines:
        ext, clean, preview, head, tail = LANGS[index % len(LANGS)]
        directory = root / f"pkg{index // 50:03}"
        directory.mkdir(parents=True, exist_ok=True)
        blocks = [head]
        for j in range(rng.randint(8, 16)):
            template = preview if rng.random() < 0.05 else clean
            blocks.append(template.format(i=index * 100 + j))
        blocks.append(tail)
        text = "".join(blocks)
        (directory / f"mod{index:05}.{ext}").write_text(text)
        files += 1
        lines += text.count("\n")
        if index % 40 == 0:  # configuration files too
            cfg = f'{{"name": "svc{index}", "url": "wss://h/openai/v1/realtime?model=m"}}\n'
            (directory / f"cfg{index:05}.json").write_text(cfg)
            files += 1
            lines += 1
        index += 1
    return files, lines


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[: args.cpus]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rtgate-bench-"))
    tree = tmp / "tree"
    files, lines = generate(tree, args.lines)
    rows: list[tuple[str, float]] = []

    def read_all() -> None:
        for path in tree.rglob("*"):
            if path.is_file():
                path.read_bytes()

    read_all()  # warm the page cache so every measurement sees the same I/O
    rows.append(("read", timed(read_all)))
    if shutil.which("grep"):
        grep = ["grep", "-r", "-c", "realtime", str(tree)]
        rows.append(("grep", timed(lambda: subprocess.run(grep, capture_output=True))))
    findings: list[int] = []

    def check() -> None:
        report = run_check([str(tree)])
        render_json(report)
        findings.append(len(report.findings))

    rows.append(("check", timed(check)))
    rows.append(("check-j1", timed(lambda: run_check([str(tree)], jobs=1))))
    cli = [sys.executable, "-m", "rtgate.migrate", "check", str(tree), "--format", "json", "--no-progress"]
    rows.append(("check-cli", timed(lambda: subprocess.run(cli, capture_output=True))))
    copy = tmp / "copy"
    shutil.copytree(tree, copy)
    rows.append(("fix", timed(lambda: run_check([str(copy)], fix=True))))
    base = rows[0][1]
    print(f"tree: {files} files, {lines} lines; {findings[0]} findings; {cpus} CPU(s)")
    print(f"{'what':10} {'seconds':>8} {'files/s':>10} {'lines/s':>11} {'x read':>8}")
    for name, seconds in rows:
        print(
            f"{name:10} {seconds:8.3f} {files / seconds:10.0f} {lines / seconds:11.0f} {seconds / base:8.1f}"
        )
    if not args.keep:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

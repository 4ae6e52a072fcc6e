"""Run every ``benchmarks/bench_*.py`` in turn and print their markdown.

    python benchmarks/run_all.py [--quick]

Each benchmark runs in its own process (one at a time: they measure CPU, so they must not
share the machine). ``--quick`` is passed to those whose ``--help`` lists it. Progress goes
to stderr; the markdown of each benchmark goes to stdout, under a heading with its name.
Exit status: 0 if every benchmark exited 0, else 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def supports_quick(script: Path) -> bool:
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    return "--quick" in help_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, where a benchmark supports it")
    args = parser.parse_args(argv)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        command = [sys.executable, str(script)]
        if args.quick and supports_quick(script):
            command.append("--quick")
        print(f"running {' '.join(command[1:])} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        print(f"  {script.name}: exit {result.returncode} in {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
        print(f"## {script.stem}\n\n`python benchmarks/{script.name}{' --quick' if '--quick' in command else ''}`\n")
        print(result.stdout.rstrip() + "\n", flush=True)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

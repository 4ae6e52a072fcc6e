"""``rtgate migrate``: command-line entry point of the migration checker and the probe.

``main(argv)`` takes the arguments after ``migrate`` and returns the exit status:
0 clean / all checks passed, 1 findings remain / a probe check failed, 2 usage error,
3 internal error (a crash of the checker itself: the traceback goes to stderr), so that a
CI job can tell a result from a failure to produce one. Only :mod:`argparse` is imported
at start-up; the checker and the probe load when used.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

_DESCRIPTION = """\
Move an app from the Realtime API Preview (beta) protocol to GA, or check that a
deployed endpoint speaks GA.

  check   find every Preview-era pattern of the migration checklist in Python,
          JS/TS, C#, Java, Go, config files, notebooks and dependency manifests;
          --fix rewrites what is safe to rewrite
  probe   connect to a live endpoint (Azure, OpenAI or rtgate) and walk the
          checklist's verification items
  rules   list the rules (ids, severity, checklist item)
"""

_CHECK_EPILOG = """\
examples:
  rtgate migrate check .                      # text report grouped by checklist item
  rtgate migrate check src --fix              # rewrite what is safe, print the diff
  rtgate migrate check . --format sarif -o rtgate.sarif   # for GitHub code scanning
  rtgate migrate check . --exclude 'tests/**' --include '*.py'

what --fix changes: event names in string literals, Preview URLs whose deployment
is visible, the OpenAI-Beta header / subprotocol entries, client.beta.realtime.connect,
openai/beta/realtime imports, a literal session.update rewritten whole to the GA
session (Python, JS/TS, JSON; never half), audio format strings and assistant content
types. Everything else is reported with the change to make. A fixed file is written only
if it still parses (Python compile(), JS/TS tree-sitter, JSON); a TypeScript payload typed
with a Preview type is left alone (tsc would reject it); an event is renamed in every file
of a package or in none; running --fix twice changes nothing the second time.

silence one finding with a comment on its line or the line above:
  # rtgate: ignore[event-renamed]        // rtgate: ignore   (all rules)

exit status: 0 no findings, 1 findings remain, 2 usage error,
3 internal error (the checker failed; the traceback is on stderr).
"""

_PROBE_EPILOG = """\
examples:
  rtgate migrate probe http://127.0.0.1:8000/v1 --api-key sk-local
  rtgate migrate probe https://myres.openai.azure.com/openai/v1 --api-key $AZURE_KEY \\
      --model my-realtime-deployment --webrtc

URL is the API base (…/v1 or …/openai/v1) or the full realtime WebSocket URL.
Checks: the GA URL (no api-version) answers with session.created; session.update with
session.type is accepted and one without it is rejected (missing_required_parameter);
a text turn uses GA event names only; an audio turn (bundled 3 s utterance) returns
audio; with --webrtc, POST /realtime/client_secrets mints an ephemeral key that opens
a session.

exit status: 0 all checks passed, 1 a check failed, 2 usage error,
3 internal error (the probe itself failed; the traceback is on stderr).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``rtgate migrate`` argument parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="rtgate migrate", description=_DESCRIPTION, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", metavar="{check,probe,rules}")

    check = sub.add_parser(
        "check",
        help="find (and --fix) Preview-era Realtime code",
        description="Find Preview-era Realtime API code and dependencies.",
        epilog=_CHECK_EPILOG,
        formatter_class=fmt,
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    check.add_argument("--fix", action="store_true", help="rewrite what is safe; print a diff")
    check.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="output format")
    check.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only check files matching GLOB (gitignore syntax; repeatable)",
    )
    check.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files matching GLOB (gitignore syntax; repeatable)",
    )
    check.add_argument("--no-gitignore", action="store_true", help="also check files that .gitignore lists")
    check.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    check.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    check.add_argument("--jobs", type=int, default=None, metavar="N", help="worker processes (default: CPUs)")

    probe = sub.add_parser(
        "probe",
        help="verify a live endpoint speaks GA",
        description="Walk the migration checklist's verification items against a live endpoint.",
        epilog=_PROBE_EPILOG,
        formatter_class=fmt,
    )
    probe.add_argument("url", metavar="URL", help="API base URL or realtime WebSocket URL")
    probe.add_argument("--api-key", required=True, metavar="K", help="API key (or Azure key)")
    probe.add_argument(
        "--model",
        default="gpt-realtime",
        metavar="M",
        help="model or Azure deployment (default: gpt-realtime)",
    )
    probe.add_argument(
        "--webrtc",
        action="store_true",
        help="also mint an ephemeral key via POST /realtime/client_secrets",
    )
    probe.add_argument("--format", choices=("text", "json"), default="text")
    probe.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for each expected event (default 15)",
    )

    sub.add_parser("rules", help="list the rules", description="List the checker's rules.")
    return parser


def _progress(stream: TextIO) -> object:
    def report(done: int, total: int) -> None:
        stream.write(f"\rrtgate migrate: {done}/{total} files")
        if done == total:
            stream.write("\n")
        stream.flush()

    return report


def _run_check(args: argparse.Namespace, out: TextIO) -> int:
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        print(
            f"rtgate migrate check: no such file or directory: {', '.join(missing)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.fix:  # checked before any file is read or written (rtgate.extras)
        from ..extras import MissingExtra, require

        try:
            require("migrate", "--fix (it parses the JavaScript and TypeScript it rewrites)")
        except MissingExtra as exc:
            print(f"rtgate migrate check: {exc}", file=sys.stderr)
            return EXIT_USAGE
    from .check import run_check
    from .files import Selection

    selection = Selection(args.include, args.exclude, use_gitignore=not args.no_gitignore)
    show = not args.no_progress and sys.stderr.isatty()
    report = run_check(
        args.paths,
        selection,
        fix=args.fix,
        jobs=args.jobs,
        progress=_progress(sys.stderr) if show else None,  # type: ignore[arg-type]
    )
    if args.format == "json":
        from .report import render_json

        text = render_json(report)
    elif args.format == "sarif":
        from .sarif import render_sarif

        text = render_sarif(report)
    else:
        from .report import render_text

        text = render_text(report, fix=args.fix)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        out.write(text)
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN


def _run_rules(out: TextIO) -> int:
    from .rules import RULES

    for rule in RULES:
        out.write(f"{rule.id:38} {rule.severity.value:8} {rule.checklist.value:12} {rule.title}\n")
    return EXIT_CLEAN


def _run_probe(args: argparse.Namespace, out: TextIO) -> int:
    from .probe import ProbeConfig, render_probe, run_probe

    config = ProbeConfig(
        url=args.url,
        api_key=args.api_key,
        model=args.model,
        webrtc=args.webrtc,
        timeout=args.timeout,
    )
    try:
        results = run_probe(config)
    except ValueError as exc:
        print(f"rtgate migrate probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out.write(render_probe(results, args.format))
    return EXIT_CLEAN if all(r.passed or r.skipped for r in results) else EXIT_FINDINGS


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``rtgate migrate`` with ``argv`` (the arguments after ``migrate``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    stream = out or sys.stdout
    commands = {"check": _run_check, "probe": _run_probe}
    if args.command == "rules":
        return _run_rules(stream)
    if args.command not in commands:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return commands[args.command](args, stream)
    except Exception:  # a crash must not read as "findings" (exit 1) in CI
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(
            f"rtgate migrate {args.command}: internal error (exit status {EXIT_INTERNAL}); "
            "the traceback above says where. Please report it with the command line.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL

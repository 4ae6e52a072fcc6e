"""Run the checker over file trees: discovery, parallel scanning, ``--fix`` writes, progress.

Contracts:

* :func:`check_file` reads, scans and (with ``fix=True``) computes the fixed text of one
  file; it never writes.
* :func:`run_check` returns one :class:`CheckReport` with results in discovery order
  (sorted paths), whether scanning ran in one process or several. With ``fix=True`` it
  writes each fixed file once, byte-for-byte as fixed (line endings and undecodable
  bytes preserved), after the text parsed back (see :mod:`rtgate.migrate.fixer`).
* SDK-version findings are kept only when the run read no code of that ecosystem
  (a manifest checked alone) or some of it uses the SDK's realtime client: a pin of
  ``openai`` in an app that uses it for chat completions only is not a migration issue.
* Renames (``RENAME_RULES``) are applied in every file of a package or in none
  (:mod:`rtgate.migrate.renames`).
* Work is split over processes only for trees of at least :data:`PARALLEL_MIN_FILES`
  files and when more than one CPU is available to this process.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .engine import scan_text
from .files import MAX_FILE_BYTES, Selection, discover, read_text
from .fixer import fix_text, unified_diff
from .model import FileResult, Finding, Lang
from .renames import hold_inconsistent

PARALLEL_MIN_FILES = 1500

# Code that uses an openai SDK's realtime client, Preview or GA, per ecosystem.
_SDK_REALTIME: dict[str, re.Pattern[str]] = {
    "python": re.compile(
        r"beta\.realtime|\.realtime\.(?:connect|client_secrets)\b|openai\.(?:types|resources)\.(?:beta\.)?realtime"
    ),
    "node": re.compile(
        r"beta\.realtime|\.realtime\.clientSecrets\b|[\"']openai/(?:beta/)?realtime"
        r"|\bOpenAIRealtimeWebSocket\b|\bOpenAIRealtimeWS\b"
    ),
    "dotnet": re.compile(r"\bRealtimeConversation\b|\bGetRealtime\w*Client\b|\bOpenAI\.Realtime\b"),
}
# Ecosystem of each SDK-version rule's manifest, and the code kinds that use that SDK.
SDK_CODE_LANGS: dict[Lang, str] = {
    Lang.PYTHON: "python",
    Lang.NOTEBOOK: "python",
    Lang.JS: "node",
    Lang.TS: "node",
    Lang.TSX: "node",
    Lang.HTML: "node",
    Lang.CSHARP: "dotnet",
}
_SDK_VERSION_RULES = frozenset(
    {"sdk-version-python", "sdk-version-node", "sdk-version-dotnet", "sdk-version-floor"}
)
_MANIFEST_ECOSYSTEM: dict[Lang, str] = {Lang.PACKAGE_JSON: "node", Lang.NUGET: "dotnet"}
BATCH_FILES = 64

Progress = Callable[[int, int], None]  # (files done, files total)


@dataclass(slots=True)
class CheckReport:
    """Everything one ``check`` run found and did."""

    results: list[FileResult] = field(default_factory=list)
    files_total: int = 0
    lines_total: int = 0
    seconds: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def fixed(self) -> list[FileResult]:
        return [r for r in self.results if r.fixed_text is not None]


def check_file(
    path: str, display: str, lang: Lang, fix: bool, max_bytes: int = MAX_FILE_BYTES
) -> tuple[FileResult, int]:
    """``(result, line count)`` for one file."""
    text, reason = read_text(path, max_bytes)
    if text is None:
        return FileResult(display, lang, skipped=reason), 0
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    result = FileResult(display, lang, scan_text(text, lang, display))
    ecosystem = SDK_CODE_LANGS.get(lang)
    result.sdk_realtime = ecosystem is not None and _SDK_REALTIME[ecosystem].search(text) is not None
    if fix and any(f.fixable for f in result.findings):
        _fix(result, text, frozenset())
    return result, lines


def _fix(result: FileResult, text: str, hold: frozenset[str]) -> None:
    """Compute ``result``'s fix of ``text`` (nothing written), not renaming ``hold``;
    ``result.findings`` are the findings of ``text`` on entry."""
    before = Counter(f.rename_of for f in result.findings if f.rename_of)
    fixed, why = fix_text(text, result.lang, result.path, hold)
    result.fix_refused = why
    result.fixed_text, result.diff, result.renamed = None, "", frozenset()
    if fixed is None:
        result.findings = scan_text(text, result.lang, result.path)
        return
    result.fixed_text = fixed
    result.diff = unified_diff(result.path, text, fixed)
    result.findings = scan_text(fixed, result.lang, result.path)
    after = Counter(f.rename_of for f in result.findings if f.rename_of)
    result.renamed = frozenset(name for name, n in before.items() if after[name] < n)


def _refix(result: FileResult, hold: frozenset[str]) -> None:
    """Redo one file's fix without renaming ``hold`` (its size was checked when first read)."""
    text, _ = read_text(result.path, max_bytes=1 << 40)
    if text is not None:
        result.findings = scan_text(text, result.lang, result.path)
        _fix(result, text, hold)


def _batch(items: Sequence[tuple[str, str, Lang]], fix: bool, max_bytes: int) -> list[tuple[FileResult, int]]:
    return [check_file(p, d, lang, fix, max_bytes) for p, d, lang in items]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_check(
    roots: Sequence[str],
    selection: Selection | None = None,
    *,
    fix: bool = False,
    jobs: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    progress: Progress | None = None,
    min_parallel: int = PARALLEL_MIN_FILES,
) -> CheckReport:
    """Check every file under ``roots``; with ``fix`` write the fixed files."""
    started = time.perf_counter()
    files = list(discover(roots, selection or Selection()))
    report = CheckReport(files_total=len(files))
    jobs = jobs if jobs is not None else _cpus()
    batches = [files[i : i + BATCH_FILES] for i in range(0, len(files), BATCH_FILES)]
    done = 0
    if jobs > 1 and len(files) >= min_parallel:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_batch, b, fix, max_bytes) for b in batches]
            for future in futures:  # in submission order: results stay sorted
                for result, lines in future.result():
                    report.results.append(result)
                    report.lines_total += lines
                done += BATCH_FILES
                if progress:
                    progress(min(done, len(files)), len(files))
    else:
        for batch in batches:
            for result, lines in _batch(batch, fix, max_bytes):
                report.results.append(result)
                report.lines_total += lines
            done += len(batch)
            if progress:
                progress(done, len(files))
    _drop_unused_sdk_versions(report.results)
    hold_inconsistent(report.results, fix, _refix)
    if fix:
        for result in report.fixed:
            _write(result)
    report.seconds = time.perf_counter() - started
    return report


def _drop_unused_sdk_versions(results: list[FileResult]) -> None:
    """An SDK pin matters only where the SDK's realtime client is used: when the run read
    code of that ecosystem and none of it uses the realtime client (openai used for chat
    completions only, realtime spoken over a raw WebSocket), SDK-version findings go."""
    seen: dict[str, bool] = {}
    for r in results:
        ecosystem = SDK_CODE_LANGS.get(r.lang)
        if ecosystem is not None and not r.skipped:
            seen[ecosystem] = seen.get(ecosystem, False) or r.sdk_realtime
    for r in results:
        ecosystem = _MANIFEST_ECOSYSTEM.get(r.lang, "python")
        if seen.get(ecosystem, True):
            continue
        r.findings = [f for f in r.findings if f.rule.id not in _SDK_VERSION_RULES]


def _write(result: FileResult) -> None:
    assert result.fixed_text is not None
    data = result.fixed_text.encode("utf-8", errors="surrogateescape")
    with open(result.path, "wb") as fh:
        fh.write(data)

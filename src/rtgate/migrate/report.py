"""Human text and JSON renderings of a :class:`~rtgate.migrate.check.CheckReport`.

The text report groups findings by checklist item (in checklist order), then by file and
line, as ``path:line:col: severity [rule-id] message`` followed by the change to make;
a summary line ends it. The JSON report has stable keys (``version`` 1) and lists every
finding with :meth:`~rtgate.migrate.model.Finding.as_dict`.
"""

from __future__ import annotations

import json
from collections import Counter

from .check import CheckReport
from .model import CHECKLIST_TITLES, Checklist, Finding

JSON_VERSION = 1


def _order(f: Finding) -> tuple[int, str, int, int]:
    return (list(Checklist).index(f.rule.checklist), f.path, f.line, f.column)


def summary(report: CheckReport) -> dict[str, object]:
    """Counts shared by the text and JSON outputs."""
    findings = report.findings
    by_severity = Counter(f.rule.severity.value for f in findings)
    return {
        "findings": len(findings),
        "errors": by_severity.get("error", 0),
        "warnings": by_severity.get("warning", 0),
        "notes": by_severity.get("note", 0),
        "fixable": sum(1 for f in findings if f.fixable),
        "files_scanned": sum(1 for r in report.results if not r.skipped),
        "files_with_findings": sum(1 for r in report.results if r.findings),
        "files_skipped": sum(1 for r in report.results if r.skipped),
        "files_fixed": len(report.fixed),
        "lines": report.lines_total,
        "seconds": round(report.seconds, 3),
    }


def render_text(report: CheckReport, *, fix: bool = False) -> str:
    """The human report (ends with a newline)."""
    out: list[str] = []
    if fix:
        for result in report.fixed:
            out.append(result.diff.rstrip("\n"))
        for result in report.results:
            if result.fix_refused:
                out.append(f"{result.path}: {result.fix_refused}")
        if out:
            out.append("")
    current: Checklist | None = None
    for f in sorted(report.findings, key=_order):
        if f.rule.checklist is not current:
            current = f.rule.checklist
            out.append(CHECKLIST_TITLES[current])
        where = f"{f.path}:{f.line}:{f.column}"
        context = f" ({f.context})" if f.context else ""
        out.append(f"  {where}: {f.rule.severity.value} [{f.rule.id}]{context} {f.message}")
        tag = " (fixable: --fix)" if f.fixable else ""
        out.append(f"      change: {f.change}{tag}")
    s = summary(report)
    if out and out[-1] != "":
        out.append("")
    parts = [
        f"{s['findings']} finding(s) ({s['errors']} error, {s['warnings']} warning, "
        f"{s['notes']} note) in {s['files_with_findings']} of {s['files_scanned']} file(s)",
    ]
    if s["fixable"]:
        parts.append(f"{s['fixable']} fixable with --fix")
    if fix:
        parts.append(f"{s['files_fixed']} file(s) fixed")
    if s["files_skipped"]:
        parts.append(f"{s['files_skipped']} file(s) skipped")
    out.append("Summary: " + "; ".join(parts) + f" ({s['seconds']} s).")
    return "\n".join(out) + "\n"


def render_json(report: CheckReport) -> str:
    """The machine report."""
    doc = {
        "version": JSON_VERSION,
        "tool": "rtgate migrate check",
        "summary": summary(report),
        "findings": [f.as_dict() for f in sorted(report.findings, key=_order)],
        "skipped": [{"path": r.path, "reason": r.skipped} for r in report.results if r.skipped],
        "fixed": [{"path": r.path, "diff": r.diff} for r in report.fixed],
        "fix_refused": [{"path": r.path, "reason": r.fix_refused} for r in report.results if r.fix_refused],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

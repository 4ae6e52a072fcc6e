"""``--fix``: apply safe edits, prove the result still parses, and produce a diff.

Contracts:

* :func:`fix_text` applies the fixable findings' edits (non-overlapping, left to right),
  rescans, and repeats until nothing fixable is left (at most :data:`MAX_PASSES`), so a
  second ``--fix`` run changes nothing (idempotence).
* The result is accepted only if it parses: Python must ``compile()``; JSON must load;
  JavaScript, TypeScript, TSX and the ``<script>`` blocks of HTML must parse with no
  error node that the original did not have (tree-sitter). The last is a comparison, not
  "no error at all", because valid syntax newer than the bundled grammar (``in out``
  variance, ``export type * from``) reads as an error node in the original too: such a
  file is still fixed, and an edit is kept only if the error nodes (type and text) stay
  exactly those of the original. For kinds without a parser only ``FixKind.LITERAL``
  edits are ever marked fixable. A Python or JSON original that does not parse is never
  written: the fix could not be verified.
* Nothing here writes files; the caller writes ``fixed`` text only when it is returned.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Callable

from .engine import scan_text
from .model import Edit, Finding, Lang
from .tsparser import ts_parser

MAX_PASSES = 4
_SCRIPT = re.compile(r"<script\b(?P<attrs>[^>]*)>(?P<body>.*?)</script\s*>", re.S | re.I)


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits; an edit overlapping an earlier one is dropped."""
    out: list[str] = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < cursor:
            continue
        out.append(text[cursor : edit.start])
        out.append(edit.replacement)
        cursor = edit.end
    out.append(text[cursor:])
    return "".join(out)


def _parses_js(text: str, kind: str) -> bool:
    tree = ts_parser(kind).parse(text.encode("utf-8", errors="surrogateescape"))
    return not tree.root_node.has_error


def _js_errors(text: str, kind: str) -> Counter[tuple[str, bytes]]:
    """The error and missing nodes of ``text`` as ``(type, source)`` (empty: parses)."""
    root = ts_parser(kind).parse(text.encode("utf-8", errors="surrogateescape")).root_node
    found: Counter[tuple[str, bytes]] = Counter()
    stack = [root] if root.has_error else []
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found[(node.type, bytes(node.text or b""))] += 1
            continue
        stack.extend(c for c in node.children if c.has_error or c.is_missing)
    return found


def _parses_python(text: str) -> bool:
    try:
        compile(text, "<rtgate-fix>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _parses_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _scripts(text: str) -> list[str]:
    return [
        m["body"] for m in _SCRIPT.finditer(text) if "src=" not in m["attrs"] and "json" not in m["attrs"]
    ]


def _parses_html(text: str) -> bool:
    return all(_parses_js(body, "tsx") for body in _scripts(text))


PARSERS: dict[Lang, Callable[[str], bool]] = {
    Lang.PYTHON: _parses_python,
    Lang.JS: lambda t: _parses_js(t, "tsx"),
    Lang.TSX: lambda t: _parses_js(t, "tsx"),
    Lang.TS: lambda t: _parses_js(t, "ts"),
    Lang.HTML: _parses_html,
    Lang.JSON: _parses_json,
}


def parses(text: str, lang: Lang) -> bool:
    """Whether ``text`` parses as ``lang`` (``True`` for kinds without a parser)."""
    check = PARSERS.get(lang)
    return True if check is None else check(text)


_JS_KIND = {Lang.JS: "tsx", Lang.TSX: "tsx", Lang.TS: "ts"}


def syntax_errors(text: str, lang: Lang) -> Counter[tuple[str, bytes]] | None:
    """What the parser could not read: ``Counter()`` when ``text`` parses, the error nodes
    of JavaScript / TypeScript / HTML scripts, ``None`` for a Python or JSON text that
    does not parse (no partial reading there)."""
    if lang in _JS_KIND:
        return _js_errors(text, _JS_KIND[lang])
    if lang is Lang.HTML:
        total: Counter[tuple[str, bytes]] = Counter()
        for body in _scripts(text):
            total += _js_errors(body, "tsx")
        return total
    return Counter() if parses(text, lang) else None


def _same_syntax(candidate: str, lang: Lang, before: Counter[tuple[str, bytes]]) -> bool:
    """The fixed text reads no worse than the original (see the module contract)."""
    if not before:
        return parses(candidate, lang)
    return syntax_errors(candidate, lang) == before


def _applicable(findings: list[Finding], hold: frozenset[str]) -> list[Finding]:
    return [f for f in findings if f.fixable and f.edit is not None and f.rename_of not in hold]


def fix_text(
    text: str, lang: Lang, path: str = "<text>", hold: frozenset[str] = frozenset()
) -> tuple[str | None, str]:
    """``(fixed text, "")``, ``(None, "")`` when nothing to fix, or ``(None, reason)``.

    ``hold``: Preview names (``Finding.rename_of``) not to rename, because another file of
    the same package keeps them (see :mod:`rtgate.migrate.renames`).
    """
    findings = scan_text(text, lang, path)
    if not _applicable(findings, hold):
        return None, ""
    before = syntax_errors(text, lang)
    if before is None:
        return None, f"not fixed: the file does not parse as {lang.value} before fixing"
    current = text
    for _ in range(MAX_PASSES):
        edits = [f.edit for f in _applicable(findings, hold) if f.edit is not None]
        if not edits:
            break
        candidate = apply_edits(current, edits)
        if candidate == current:
            break
        if not _same_syntax(candidate, lang, before):
            return _fix_one_by_one(text, lang, path, before, hold)
        current = candidate
        findings = scan_text(current, lang, path)
    return (current if current != text else None), ""


def _fix_one_by_one(
    text: str, lang: Lang, path: str, before: Counter[tuple[str, bytes]], hold: frozenset[str]
) -> tuple[str | None, str]:
    """Fallback: keep each edit only if the text still parses after it.

    Edits are tried right to left, so earlier offsets stay valid within a pass.
    """
    current = text
    refused = 0
    for _ in range(MAX_PASSES):
        fixable = _applicable(scan_text(current, lang, path), hold)
        fixable.sort(key=lambda f: f.edit.start if f.edit else 0, reverse=True)
        refused, changed, limit = 0, False, len(current) + 1
        for finding in fixable:
            assert finding.edit is not None
            if finding.edit.end > limit:
                continue
            candidate = apply_edits(current, [finding.edit])
            if _same_syntax(candidate, lang, before):
                current, changed, limit = candidate, True, finding.edit.start
            else:
                refused += 1
        if not changed:
            break
    why = "the result would not parse" if not before else "they touch code the parser cannot read"
    reason = f"{refused} edit(s) not applied: {why}" if refused else ""
    return (current if current != text else None), reason


def unified_diff(path: str, before: str, after: str) -> str:
    """A unified diff of one file, ``a/`` and ``b/`` prefixed like ``git diff``."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


def remaining_fixable(findings: list[Finding]) -> list[Finding]:
    """The findings a further ``--fix`` would still change."""
    return [f for f in findings if f.fixable]

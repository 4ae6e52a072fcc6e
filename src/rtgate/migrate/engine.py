"""Scan one text against the rule table: hits → findings, ignore comments, positions.

Contracts:

* :func:`scan_text` is pure: text and kind in, findings out (no I/O). A finding's
  ``edit`` is set when the rule has a fix for that occurrence; ``fixable`` is true only
  when the edit may be applied to this kind of file (``FixKind.LITERAL`` anywhere,
  ``FixKind.STRUCTURAL`` only where the result is parsed back).
* ``rtgate: ignore`` (all rules) or ``rtgate: ignore[rule-a, rule-b]`` in a comment on the
  finding's line or the line before suppresses it.
* Notebooks (:func:`scan_notebook`) are scanned cell by cell; positions are mapped back to
  the line of the notebook file that holds the cell's source line.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Iterator

from . import fields, manifests, payloads
from .derive import DERIVERS
from .lexmask import Mask
from .model import (
    CODE_LANGS,
    MANIFEST_LANGS,
    PARSED_LANGS,
    RENAME_RULES,
    Edit,
    Finding,
    FixKind,
    Hit,
    Lang,
    Rule,
)
from .rules import PATTERN_RULES, RULES_BY_ID, TRIGGERS, needles_of

_TRIGGER = re.compile("|".join(re.escape(t) for t in TRIGGERS))
_IGNORE = re.compile(r"rtgate:\s*ignore(?:\[(?P<ids>[^\]]*)\])?")
_PAYLOAD_TRIGGERS = ("session.update", "conversation.item.create", "response.create")
_PAYLOAD_LANGS = CODE_LANGS | {Lang.JSON}
_FIELD_LANGS = CODE_LANGS | {Lang.JSON, Lang.YAML}


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _pattern_hits(rule: Rule, text: str) -> Iterator[Hit]:
    assert rule.pattern is not None
    derive = DERIVERS.get(rule.derive_name)
    for m in rule.pattern.finditer(text):
        fields = _Fields({k: v for k, v in m.groupdict().items() if v is not None})
        start, end = m.start(), m.end()
        template = rule.fix
        if derive is not None:
            extra = derive(m, text)
            if "drop" in extra:
                continue
            span = extra.pop("span", None)
            if span:
                a, b = span.split(":")
                start, end = int(a), int(b)
            if "fix" in extra and extra["fix"] is None:
                template = None
            fields.update({k: v for k, v in extra.items() if v is not None})
        edit = None
        if template is not None:
            edit = Edit(start, end, template.format_map(fields))
            if text[start:end] == edit.replacement:
                edit = None
        yield Hit(rule.id, m.start(), m.end(), dict(fields), edit)


def raw_hits(text: str, lang: Lang) -> Iterator[Hit]:
    """Every hit of every applicable rule that is not prose (see :func:`code_hits`)."""
    hits = list(_all_hits(text, lang))
    yield from code_hits(text, lang, hits) if hits else ()


# Rules whose match starts at the opening quote of a string literal.
_LITERAL_RULES = frozenset(
    {
        "event-renamed",
        "event-prefix",
        "event-removed",
        "event-transcription-session-update",
        "beta-subprotocol",
        "beta-header",
    }
)
_TEST_TITLE = re.compile(r"\b(?:it|test|describe|context|step)(?:\.\w+)?\s*\(\s*$")


# Other vendors' realtime APIs borrow the Preview shapes (Gemini Live's
# input_audio_transcription, Azure Voice Live's Preview event names, xAI's voice API…):
# in a file that speaks to one of them, and shows no sign of OpenAI's Realtime API, the
# protocol rules stay silent.
_OTHER_VENDOR = re.compile(
    r"gemini|generativelanguage\.googleapis|voice[-_]?live"
    r"|azure_semantic_vad|api\.x\.ai|\bgrok\b|ultravox|stepfun|dashscope|nova[-_]sonic",
    re.I,
)
_OPENAI_REALTIME = re.compile(
    r"api\.openai\.com|openai\.azure\.com|gpt-4o(?:-mini)?-realtime|gpt-realtime|OpenAI-Beta"
    r"|beta\.realtime|openai_realtime|OpenAIRealtime|rtclient|rt-client",
    re.I,
)
_PROTOCOL_RULES = frozenset(
    {
        "event-renamed",
        "event-prefix",
        "event-removed",
        "session-missing-type",
        "session-preview-field",
        "response-preview-field",
        "content-type-preview",
        "content-type-compare",
        "audio-format-string",
    }
)


def other_vendor(text: str) -> bool:
    """``text`` talks to another vendor's realtime API, not to OpenAI's."""
    return _OTHER_VENDOR.search(text) is not None and _OPENAI_REALTIME.search(text) is None


def code_hits(text: str, lang: Lang, hits: list[Hit]) -> list[Hit]:
    """Drop hits in prose: comments, docstrings, a name quoted inside a larger string
    (``'receives "conversation.item.created"'``) and test titles (``it("response.text.delta",``);
    and protocol hits in files that talk to another vendor's API (:func:`other_vendor`)."""
    if other_vendor(text):
        hits = [h for h in hits if h.rule_id not in _PROTOCOL_RULES]
    mask = Mask.of(text, lang)
    kept = []
    for hit in hits:
        if mask.in_comment(hit.start):
            continue
        if hit.rule_id in _LITERAL_RULES and text[hit.start] != "\\":
            if not mask.is_literal_start(hit.start):
                continue
            if _TEST_TITLE.search(text, max(0, hit.start - 40), hit.start):
                continue
        kept.append(hit)
    return kept


def _all_hits(text: str, lang: Lang) -> Iterator[Hit]:
    if not _TRIGGER.search(text):
        return
    for rule in PATTERN_RULES:
        if lang not in rule.languages:
            continue
        needles = needles_of(rule)
        if needles and not any(n in text for n in needles):
            continue
        yield from _pattern_hits(rule, text)
    if lang in _PAYLOAD_LANGS and any(t in text for t in _PAYLOAD_TRIGGERS):
        yield from payloads.analyze(text, lang)
    if lang in _FIELD_LANGS and ("session" in text or any(f in text for f in fields.STRONG)):
        yield from fields.analyze(text)
    if lang in MANIFEST_LANGS:
        yield from manifests.analyze(text, lang)


def ignore_map(text: str) -> dict[int, frozenset[str] | None]:
    """Line (1-based) → rule ids ignored there (``None``: all rules)."""
    result: dict[int, frozenset[str] | None] = {}
    if "rtgate:" not in text:
        return result
    for m in _IGNORE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        ids = m["ids"]
        result[line] = None if ids is None else frozenset(i.strip() for i in ids.split(","))
    return result


def _suppressed(ignores: dict[int, frozenset[str] | None], line: int, rule_id: str) -> bool:
    for candidate in (line, line - 1):
        if candidate in ignores:
            ids = ignores[candidate]
            if ids is None or rule_id in ids:
                return True
    return False


class Positions:
    """Offset → (line, column), both 1-based."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1

    def line_text(self, line: int) -> str:
        start = self.starts[line - 1]
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        return self.text[start:end].rstrip("\r")


def _fixable(rule: Rule, lang: Lang, edit: Edit | None) -> bool:
    if edit is None or lang is Lang.NOTEBOOK:
        return False
    return rule.fix_kind is FixKind.LITERAL or lang in PARSED_LANGS


def to_findings(
    text: str, lang: Lang, path: str, hits: Iterable[Hit], rule_lang: Lang | None = None
) -> list[Finding]:
    """Turn hits into positioned findings, dropping ignored and duplicate ones.

    ``rule_lang`` is the kind rules are filtered by (default ``lang``; notebooks scan
    cells as code but filter by ``Lang.NOTEBOOK``).
    """
    rule_lang = rule_lang or lang
    hits = list(hits)
    if not hits:
        return []
    ignores = ignore_map(text)
    pos = Positions(text)
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for hit in sorted(hits, key=lambda h: (h.start, h.rule_id)):
        rule = RULES_BY_ID[hit.rule_id]
        if rule_lang not in rule.languages or (hit.rule_id, hit.start) in seen:
            continue
        seen.add((hit.rule_id, hit.start))
        line, col = pos.at(hit.start)
        if _suppressed(ignores, line, rule.id):
            continue
        end_line, end_col = pos.at(hit.end)
        fields = _Fields(hit.fields)
        message = rule.message.format_map(fields)
        change = hit.fields.get("change") or rule.change.format_map(fields)
        findings.append(
            Finding(
                rule=rule,
                path=path,
                line=line,
                column=col,
                end_line=end_line,
                end_column=end_col,
                message=message,
                change=change,
                snippet=pos.line_text(line).strip()[:200],
                edit=hit.edit,
                fixable=_fixable(rule, lang, hit.edit),
                rename_of=hit.fields.get("name", "") if rule.id in RENAME_RULES else "",
            )
        )
    return findings


def scan_text(text: str, lang: Lang, path: str = "<text>") -> list[Finding]:
    """All findings in ``text`` of kind ``lang`` (notebooks: see :func:`scan_notebook`)."""
    if lang is Lang.NOTEBOOK:
        return scan_notebook(text, path)
    return to_findings(text, lang, path, raw_hits(text, lang))


def _cell_language(nb: dict[str, object]) -> Lang:
    meta = nb.get("metadata")
    name = ""
    if isinstance(meta, dict):
        info = meta.get("language_info") or meta.get("kernelspec") or {}
        if isinstance(info, dict):
            name = str(info.get("name") or info.get("language") or "")
    name = name.lower()
    if name in ("javascript", "typescript", "deno"):
        return Lang.JS
    if name in ("csharp", "c#", ".net-csharp"):
        return Lang.CSHARP
    return Lang.PYTHON


def scan_notebook(text: str, path: str) -> list[Finding]:
    """Findings in the code cells of a Jupyter notebook, positioned in the ``.ipynb`` file."""
    if not _TRIGGER.search(text):
        return []
    try:
        nb = json.loads(text)
    except ValueError:
        return []
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        return []
    cell_lang = _cell_language(nb)
    lines = text.splitlines()
    source_lines = [i + 1 for i, line in enumerate(lines) if '"source":' in line]
    findings: list[Finding] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        code = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") != "code" or not code:
            continue
        hits = list(raw_hits(code, cell_lang))
        if cell_lang is Lang.PYTHON and "pip" in code:
            hits += list(manifests.pip_install_hits(code))
        base = source_lines[index] if index < len(source_lines) else 1
        for f in to_findings(code, cell_lang, path, hits, rule_lang=Lang.NOTEBOOK):
            offset = f.line if isinstance(source, list) else 0
            f.line = f.end_line = min(base + offset, len(lines))
            indent = lines[f.line - 1].find('"') + 1
            f.column, f.end_column = f.column + indent, f.end_column + indent
            f.edit, f.fixable, f.context = None, False, f"cell {index + 1}"
            findings.append(f)
    return findings

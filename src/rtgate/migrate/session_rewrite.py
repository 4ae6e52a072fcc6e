"""Complete rewrite of a literal Preview ``session`` object to the GA shape
(docs/protocol.md, Preview dialect).

Contracts:

* :func:`rewrite` returns one :class:`Edit` that replaces the whole object literal
  ``text[obj.open:obj.close + 1]``, or a reason (a sentence) why it cannot. There is no
  partial result: GA rejects an update that keeps any Preview field (``unknown_parameter``),
  so a half-migrated update is worse than none.
* Rewritten: ``input_audio_format`` / ``output_audio_format`` (a Preview format string
  literal) → ``audio.input.format`` / ``audio.output.format`` objects
  (``PREVIEW_AUDIO_FORMATS``); ``voice``, ``speed`` → ``audio.output.*``;
  ``turn_detection``, ``input_audio_transcription``, ``input_audio_noise_reduction`` →
  ``audio.input.*``; ``modalities`` (a literal list of ``"text"`` / ``"audio"``) →
  ``output_modalities`` with one value (``"audio"`` when audio was asked for: its
  transcript carries the text); ``max_response_output_tokens`` → ``max_output_tokens``;
  ``temperature`` dropped (GA has none); ``type: "realtime"`` added first when missing.
  Every other value is copied verbatim, in its original order.
* Only self-contained literals are rewritten, in Python, JavaScript / TypeScript and JSON:
  every entry has a literal key (quoted in Python), no spread, no comment, no duplicate
  key, no GA key (``audio``, ``output_modalities``, ``max_output_tokens``) to merge into.
* The layout follows the original: one line stays one line; a multi-line object keeps its
  indentation step, and continuation lines of a moved value are re-indented unless the
  value holds a multi-line string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rtgate.protocol.dialects import PREVIEW_AUDIO_FORMATS, PREVIEW_SESSION_FIELDS

from .lexmask import spans
from .literals import Key, ObjectLiteral, is_delimiter, skip_string
from .model import Edit, Lang

REWRITE_LANGS: frozenset[Lang] = frozenset({Lang.PYTHON, Lang.JS, Lang.TS, Lang.TSX, Lang.JSON})

# Preview field → (GA section or None for top level, GA name); temperature is dropped.
_MOVES: dict[str, tuple[str | None, str]] = {
    "input_audio_format": ("input", "format"),
    "turn_detection": ("input", "turn_detection"),
    "input_audio_transcription": ("input", "transcription"),
    "input_audio_noise_reduction": ("input", "noise_reduction"),
    "output_audio_format": ("output", "format"),
    "voice": ("output", "voice"),
    "speed": ("output", "speed"),
    "modalities": (None, "output_modalities"),
    "max_response_output_tokens": (None, "max_output_tokens"),
}
_DROPPED = frozenset({"temperature"})
_GA_KEYS = ("audio", "output_modalities", "max_output_tokens")
_FORMAT_STRING = re.compile(r"""(?P<q>["'`])(?P<fmt>\w+)(?P=q)\Z""")
_MODALITIES = re.compile(r"""\[\s*(?:(?P<q>["'])(?:text|audio)(?P=q)\s*(?:,\s*)?)+\]\Z""")
_STRING = re.compile(r"""["']""")
_REALTIME = re.compile(r"""(["'])realtime\1\Z""")


@dataclass(frozen=True, slots=True)
class _Entry:
    key: Key
    value: str  # verbatim source of the value


@dataclass(frozen=True, slots=True)
class _Style:
    key_quote: str  # "" for bare JS keys
    value_quote: str
    multiline: bool
    indent: str  # of the object's entries
    close_indent: str  # of the closing brace
    step: str
    pad: str  # " " inside braces of a one-line JS object


def _segments(text: str, obj: ObjectLiteral) -> list[tuple[int, int]]:
    """``(start, end)`` of each top-level comma-separated entry, blank ones dropped."""
    out: list[tuple[int, int]] = []
    start, i, depth = obj.open + 1, obj.open + 1, 0
    while i < obj.close:
        c = text[i]
        if is_delimiter(text, i):
            i = skip_string(text, i, obj.close)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == "," and depth == 0:
            out.append((start, i))
            start = i + 1
        i += 1
    out.append((start, obj.close))
    return [(s, e) for s, e in out if text[s:e].strip()]


def _entries(text: str, obj: ObjectLiteral, lang: Lang) -> list[_Entry] | str:
    if obj.spread:
        return "it spreads another object into the session (** / ...)"
    if any(kind == "comment" for *_, kind in spans(text[obj.open : obj.close + 1], lang)):
        return "the session literal holds comments, which a rewrite would have to move"
    by_start = {k.start - len(k.quote): k for k in obj.keys}
    entries: list[_Entry] = []
    for start, end in _segments(text, obj):
        lead = start + len(text[start:end]) - len(text[start:end].lstrip())
        key = by_start.get(lead)
        if key is None or text[key.end + len(key.quote) : key.value].strip() != ":":
            return f"the entry '{text[lead:end].strip()[:40]}' has no literal key"
        if key.quote.startswith("\\"):
            return "the session is JSON text inside a string"
        if lang is Lang.PYTHON and not key.quote:
            return f"'{key.name}' is a variable, not a literal key"
        value = text[key.value:end].rstrip()
        if not value:
            return f"'{key.name}' has no value"
        entries.append(_Entry(key, value))
    names = [e.key.name for e in entries]
    if len(set(names)) != len(names):
        return "a key appears twice"
    return entries


def _style(text: str, obj: ObjectLiteral, entries: list[_Entry], lang: Lang) -> _Style:
    first = entries[0].key if entries else None
    key_quote = first.quote if first else ('' if lang not in (Lang.PYTHON, Lang.JSON) else '"')
    m = _STRING.search(text, obj.open, obj.close)
    value_quote = m.group() if m else '"'
    body = text[obj.open : obj.close]
    line_start = text.rfind("\n", 0, first.start) + 1 if first else 0
    indent = text[line_start : first.start - len(first.quote)] if first else ""
    if "\n" not in body or first is None or indent.strip():
        pad = " " if lang not in (Lang.PYTHON, Lang.JSON) and text[obj.open + 1 : obj.open + 2] == " " else ""
        return _Style(key_quote, value_quote, False, "", "", "", pad)
    close_line = text.rfind("\n", 0, obj.close) + 1
    before_close = text[close_line : obj.close]
    close_indent = before_close if not before_close.strip() else ""
    nested = indent.startswith(close_indent) and indent != close_indent
    step = indent[len(close_indent) :] if nested else "    "
    return _Style(key_quote, value_quote, True, indent, close_indent, step, "")


def _format_value(value: str, style: _Style) -> str | None:
    m = _FORMAT_STRING.match(value)
    fmt = PREVIEW_AUDIO_FORMATS.get(m["fmt"]) if m else None
    if m is None or fmt is None:
        return None
    q, kq = m["q"].replace("`", style.value_quote), style.key_quote
    body = ", ".join(
        f"{kq}{k}{kq}: " + (f"{q}{v}{q}" if isinstance(v, str) else str(v)) for k, v in fmt.items()
    )
    pad = " " if not kq else ""
    return "{" + pad + body + pad + "}"


def _modalities_value(value: str) -> str | None:
    m = _MODALITIES.match(value)
    if m is None:
        return None
    q = m["q"]
    return f"[{q}audio{q}]" if "audio" in value else f"[{q}text{q}]"


def _converted(entry: _Entry, style: _Style) -> str:
    """The GA value of a moved field, or raises ValueError with the reason."""
    name, value = entry.key.name, entry.value
    if name.endswith("audio_format"):
        ga = _format_value(value, style)
        if ga is None:
            known = ", ".join(PREVIEW_AUDIO_FORMATS)
            raise ValueError(f"'{name}' is not a Preview format string literal ({known})")
        return ga
    if name == "modalities":
        ga = _modalities_value(value)
        if ga is None:
            raise ValueError("'modalities' is not a literal list of 'text' / 'audio'")
        return ga
    return value


def _reindent(value: str, extra: str, lang: Lang) -> str:
    if "\n" not in value or not extra:
        return value
    if any(kind == "string" and "\n" in value[s:e] for s, e, kind in spans(value, lang)):
        return value  # a multi-line string: its content must not change
    return value.replace("\n", "\n" + extra)


def _render(items: list[tuple[str, str]], style: _Style, depth: int, trailing: bool) -> str:
    if not style.multiline:
        return "{" + style.pad + ", ".join(f"{k}: {v}" for k, v in items) + style.pad + "}"
    inner = style.indent + style.step * depth
    outer = style.close_indent + style.step * depth
    lines = ",\n".join(f"{inner}{k}: {v}" for k, v in items)
    return "{\n" + lines + ("," if trailing else "") + "\n" + outer + "}"


def rewrite(text: str, obj: ObjectLiteral, lang: Lang) -> Edit | str:
    """The edit that migrates the whole session literal, or why it is left alone."""
    if lang not in REWRITE_LANGS:
        return "session literals are rewritten in Python, JavaScript / TypeScript and JSON only"
    parsed = _entries(text, obj, lang)
    if isinstance(parsed, str):
        return parsed
    entries = parsed
    clash = next((k for k in _GA_KEYS if any(e.key.name == k for e in entries)), None)
    if clash is not None:
        return f"it already has '{clash}'; merge the Preview fields into it by hand"
    kind = next((e.value for e in entries if e.key.name == "type"), None)
    if kind is not None and not _REALTIME.match(kind):
        return f"its type is {kind[:30]}, not 'realtime' (the Preview fields belong to a realtime session)"
    style = _style(text, obj, entries, lang)
    kq = style.key_quote
    audio: dict[str, list[tuple[str, str]]] = {"input": [], "output": []}
    top: list[tuple[str, str] | None] = []  # None marks where "audio" goes
    for entry in entries:
        name = entry.key.name
        if name in _DROPPED:
            continue
        if name not in PREVIEW_SESSION_FIELDS:
            key_text = text[entry.key.start - len(entry.key.quote) : entry.key.end + len(entry.key.quote)]
            top.append((key_text, _reindent(entry.value, "", lang)))
            continue
        try:
            value = _converted(entry, style)
        except ValueError as exc:
            return str(exc)
        section, ga = _MOVES[name]
        if section is None:
            top.append((f"{kq}{ga}{kq}", value))
        else:
            audio[section].append((f"{kq}{ga}{kq}", _reindent(value, style.step * 2, lang)))
            if None not in top:
                top.append(None)
    trailing = style.multiline and text[obj.open + 1 : obj.close].rstrip().endswith(",")
    items: list[tuple[str, str]] = []
    if not any(e.key.name == "type" for e in entries):
        items.append((f"{kq}type{kq}", f"{style.value_quote}realtime{style.value_quote}"))
    for item in top:
        if item is not None:
            items.append(item)
            continue
        sections = [
            (f"{kq}{section}{kq}", _render(fields, style, 2, trailing))
            for section, fields in audio.items()
            if fields
        ]
        items.append((f"{kq}audio{kq}", _render(sections, style, 1, trailing)))
    return Edit(obj.open, obj.close + 1, _render(items, style, 0, trailing))

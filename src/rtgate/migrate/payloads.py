"""Payload-shape rules: ``session.update``, ``response.create``, ``conversation.item.create``.

The analyzer finds each client event by its type string (``"session.update"``, also
escaped inside JSON strings) or by an SDK call (``conn.session.update(session={…})``),
locates the object literal that carries the payload (``session``, ``response``, ``item``),
and lists that object's top-level keys. It understands the object-literal syntaxes of the
supported languages well enough for this: Python dicts, JS/TS objects, JSON, C#
anonymous objects (``new { key = … }``), Go map and struct literals, and JSON text in
strings. It does not evaluate code: a payload built elsewhere (a variable, ``dict(...)``,
``Map.of``) is not analyzed, and an object with a spread (``...base``, ``**base``) is not
reported as missing ``type``.

Rules evaluated here: ``session-missing-type``, ``session-preview-field``,
``response-preview-field``, ``content-type-preview`` (docs/protocol.md, Preview dialect).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from rtgate.protocol.dialects import (
    PREVIEW_AUDIO_FORMATS,
    PREVIEW_CONTENT_TYPES,
    PREVIEW_SESSION_FIELDS,
)

from .literals import Key, ObjectLiteral, enclosing_open, match_close, parse_object
from .model import Edit, Hit, Lang
from .session_rewrite import rewrite
from .tstypes import type_conflict

_EVENT = re.compile(
    r"""(?P<q>\\?["'`])(?P<ev>session\.update|conversation\.item\.create|response\.create)(?P=q)"""
    r"""|\.(?P<call>session\.update|conversation\.item\.create|response\.create)\s*\("""
)
_PAYLOAD_KEY = {
    "session.update": "session",
    "conversation.item.create": "item",
    "response.create": "response",
}
# What may stand between a key and the "{" of its object value.
_VALUE_OPEN = re.compile(
    r"(?:new\s*(?:[\w.<>]+\s*)?(?:\(\s*\)\s*)?|map\[[^\]]*\](?:interface\{\}|any|[\w.]+)\s*"
    r"|&?[\w.]+\s*)?\{"
)

# response.create fields that GA renamed or removed (docs/protocol.md, Preview dialect).
_RESPONSE_FIELDS: dict[str, str | None] = {
    "modalities": "output_modalities",
    "voice": "audio.output.voice",
    "output_audio_format": "audio.output.format",
    "temperature": None,
    "max_response_output_tokens": "max_output_tokens",
}
_RENAMABLE = {"max_response_output_tokens": "max_output_tokens"}


def _value_object(text: str, key: Key) -> ObjectLiteral | None:
    m = _VALUE_OPEN.match(text, key.value)
    if not m:
        return None
    return parse_object(text, m.end() - 1)


def _call_payload(text: str, paren: int, name: str) -> ObjectLiteral | None:
    """``.session.update(session={…})``: the object passed as keyword ``name``."""
    close = match_close(text, paren)
    if close < 0:
        return None
    m = re.compile(rf"\b{name}\s*=\s*").search(text, paren, close)
    if not m:
        return None
    key = Key(name, m.start(), m.start() + len(name), "", m.end())
    return _value_object(text, key)


_SEND_DATA = re.compile(r"\s*,\s*\{")


def _event_object(text: str, m: re.Match[str], name: str) -> ObjectLiteral | None:
    """The payload of an event named by its type string: ``{type: "session.update",
    session: {…}}``, or ``send("session.update", {session: {…}})`` (a dispatcher that takes
    the type and the rest of the event apart, as openai-realtime-api-beta's ``send``)."""
    data = _SEND_DATA.match(text, m.end())
    if data is not None:
        outer = parse_object(text, data.end() - 1)
    else:
        open_idx = enclosing_open(text, m.start())
        outer = parse_object(text, open_idx) if open_idx >= 0 else None
    key = outer.get(name) if outer else None
    return _value_object(text, key) if key else None


def find_payloads(text: str) -> Iterator[tuple[str, ObjectLiteral]]:
    """Yield ``(event type, payload object)`` for every analyzable client event."""
    for m in _EVENT.finditer(text):
        event = m["ev"] or m["call"]
        name = _PAYLOAD_KEY[event]
        obj = _call_payload(text, m.end() - 1, name) if m["call"] else _event_object(text, m, name)
        if obj is not None:
            yield event, obj


_GA_FORMATS = ", ".join(f"{json.dumps(fmt)} for '{name}'" for name, fmt in PREVIEW_AUDIO_FORMATS.items())


def field_change(field: str, target: str | None) -> str:
    if target is None:
        return f"remove '{field}' (GA has no such field)"
    if field == "modalities":
        return "use output_modalities: ['audio'] or ['text'] (one, never both)"
    if field.endswith("audio_format"):
        return f"move it to {target} as an object: {_GA_FORMATS}"
    if field in _RENAMABLE:
        return f"rename it to '{target}'"
    return f"move it to {target}"


def _rename_edit(obj: ObjectLiteral, key: Key) -> Edit | None:
    new = _RENAMABLE.get(key.name)
    if new is None or obj.get(new) is not None:
        return None
    return Edit(key.start, key.end, new)


def _insert_type(text: str, obj: ObjectLiteral, value: str) -> Edit:
    """Insert ``type: value`` as the first key, in the style of the existing keys."""
    first = obj.keys[0] if obj.keys else None
    quote = first.quote if first else '"'
    if quote:
        vq = quote
    else:  # unquoted keys: quote the value like the object's other strings
        m = re.compile(r"[\"']").search(text, obj.open, obj.close)
        vq = m.group() if m else '"'
    sep = ": "
    if first is not None and text[first.end + len(first.quote) : first.value].strip() == "=":
        sep = " = "
    entry = f"{quote}type{quote}{sep}{vq}{value}{vq}"
    if first is None:
        return Edit(obj.open + 1, obj.open + 1, entry)
    key_start = first.start - len(first.quote)
    gap = text[obj.open + 1 : key_start]
    if "\n" in gap:
        indent = gap[gap.rfind("\n") + 1 :]
        return Edit(obj.open + 1, obj.open + 1, f"\n{indent}{entry},")
    return Edit(key_start, key_start, f"{entry}, ")


def _content_hits(text: str, item: ObjectLiteral) -> Iterator[Hit]:
    role = item.get("role")
    content = item.get("content")
    if role is None or content is None:
        return
    if not re.compile(r"""\\?["']assistant\\?["']""").match(text, role.value):
        return
    if not text.startswith("[", content.value):
        return
    end = match_close(text, content.value)
    pattern = re.compile(
        r"""(?<![\w.])(?P<kq>\\?["']?)type(?P=kq)\s*[:=]\s*(?P<v>(?P<q>\\?["'])(?P<t>text|audio)(?P=q))"""
    )
    for m in pattern.finditer(text, content.value, end):
        new = PREVIEW_CONTENT_TYPES[m["t"]]
        yield Hit(
            "content-type-preview",
            m.start("v"),
            m.end("v"),
            {"old": m["t"], "new": new},
            Edit(m.start("v"), m.end("v"), f"{m['q']}{new}{m['q']}"),
        )


def analyze(text: str, lang: Lang | None = None) -> Iterator[Hit]:
    """All payload-shape hits in ``text`` (any supported language; ``lang`` enables the
    complete ``session.update`` rewrite where it is supported)."""
    seen: set[int] = set()
    for event, obj in find_payloads(text):
        if obj.open in seen:
            continue
        seen.add(obj.open)
        if event == "session.update":
            yield from _session_hits(text, obj, lang)
        elif event == "response.create":
            typed = ""
            for key in obj.keys:
                if key.name in _RESPONSE_FIELDS:
                    target = _RESPONSE_FIELDS[key.name]
                    change = field_change(key.name, target)
                    edit = _rename_edit(obj, key)
                    if edit is not None and lang is not None:
                        typed = typed or type_conflict(text, obj.open, lang)
                    if edit is not None and typed:
                        edit, change = None, f"{change} (--fix leaves it: {typed})"
                    yield Hit("response-preview-field", key.start, key.end,
                              {"field": key.name, "change": change}, edit)
        else:
            yield from _content_hits(text, obj)


def _session_hits(text: str, obj: ObjectLiteral, lang: Lang | None) -> Iterator[Hit]:
    """Never a half migration: the update is either rewritten whole (one edit replacing the
    session literal, :mod:`rtgate.migrate.session_rewrite`, carried by every finding it
    fixes) or left alone with the reason; inserting only ``type`` made GA reject the whole
    update with unknown_parameter, and the app ran with the default session."""
    preview = [k.name for k in obj.keys if k.name in PREVIEW_SESSION_FIELDS]
    stuck = [name for name in preview if name not in _RENAMABLE]
    whole: Edit | None = None
    reason = ""
    if preview and lang is not None:
        result = rewrite(text, obj, lang)
        if isinstance(result, Edit):
            whole, stuck = result, []
        else:
            reason = result
    # TypeScript: a payload checked against a declared Preview type is left alone whole
    # (an inserted type or a moved field would fail tsc), with the reason on each finding.
    wants_edit = bool(preview) or (obj.get("type") is None and not obj.spread)
    typed = type_conflict(text, obj.open, lang) if lang is not None and wants_edit and not reason else ""
    if typed:
        whole, reason = None, typed
        stuck = preview or ["type"]
    for key in obj.keys:
        if key.name in PREVIEW_SESSION_FIELDS:
            target = PREVIEW_SESSION_FIELDS[key.name]
            change = field_change(key.name, target)
            if stuck and reason:
                change += f" (--fix leaves this update alone: {reason})"
            edit = whole or (None if stuck else _rename_edit(obj, key))
            fields = {"field": key.name, "change": change}
            yield Hit("session-preview-field", key.start, key.end, fields, edit)
    if obj.get("type") is None and not obj.spread:
        end = obj.open + 1
        if typed:
            change = f"add type: 'realtime' to the session object; --fix leaves this update alone: {typed}"
            yield Hit("session-missing-type", obj.open, end, {"change": change})
        elif whole is not None:
            yield Hit("session-missing-type", obj.open, end, {}, whole)
        elif stuck:
            why = f"--fix leaves this update alone: {reason}" if reason else "--fix leaves this update alone"
            change = (
                f"add type: 'realtime' in the same change that moves {', '.join(stuck)} "
                f"(GA rejects an update that still has them: unknown_parameter); {why}"
            )
            yield Hit("session-missing-type", obj.open, end, {"change": change})
        else:
            yield Hit("session-missing-type", obj.open, end, {}, _insert_type(text, obj, "realtime"))

"""Object literals in source text: finding one's closing bracket and its top-level keys.

The scanner the payload rules (:mod:`.payloads`, :mod:`.fields`) and the session rewrite
(:mod:`.session_rewrite`) share. It reads Python dicts, JS/TS objects, JSON, C# anonymous
objects and Go literals well enough to list top-level keys; it skips string literals and
nested brackets, never evaluates code, and looks at most :data:`MAX_SCAN` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SCAN = 8000  # characters searched around an event for its payload

_KEY = re.compile(r"""\s*(?P<kq>\\?["']?)(?P<k>[A-Za-z_]\w*)(?P=kq)\s*(?::(?!:)|=(?![=>]))\s*""")
_SPREAD = re.compile(r"\s*(?:\.\.\.|\*\*)")
_QUOTES = "\"'`"
_OPEN = "{[("
_CLOSE = "}])"


@dataclass(frozen=True, slots=True)
class Key:
    """A top-level key of an object literal: name span and where its value starts."""

    name: str
    start: int
    end: int
    quote: str
    value: int


@dataclass(frozen=True, slots=True)
class ObjectLiteral:
    """An object literal ``text[open:close+1]`` and its top-level keys."""

    open: int
    close: int
    keys: tuple[Key, ...]
    spread: bool

    def get(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


def skip_string(text: str, i: int, limit: int) -> int:
    """Index just past the string literal opening at ``text[i]`` (or ``i + 1``)."""
    q = text[i]
    j = i + 1
    while j < limit:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == q:
            return j + 1
        if c == "\n" and q != "`" and text[j - 1] != "\\":
            return j  # unterminated on this line: not a string we understand
        j += 1
    return limit


def is_delimiter(text: str, i: int) -> bool:
    """Whether ``text[i]`` opens or closes a string literal (a quote not escaped)."""
    return text[i] in _QUOTES and (i == 0 or text[i - 1] != "\\")


def match_close(text: str, open_idx: int) -> int:
    """Index of the bracket closing ``text[open_idx]``, or -1."""
    depth = 0
    i, limit = open_idx, min(len(text), open_idx + MAX_SCAN)
    while i < limit:
        c = text[i]
        if is_delimiter(text, i) and i != open_idx:
            i = skip_string(text, i, limit)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def parse_object(text: str, open_idx: int) -> ObjectLiteral | None:
    """The object literal whose ``{`` is at ``open_idx``, with its top-level keys."""
    close = match_close(text, open_idx)
    if close < 0:
        return None
    keys: list[Key] = []
    spread = False
    i, depth, expect_key = open_idx + 1, 0, True
    while i < close:
        if depth == 0 and expect_key:
            expect_key = False
            if _SPREAD.match(text, i):
                spread = True
            m = _KEY.match(text, i)
            if m and m.end() <= close:
                keys.append(Key(m["k"], m.start("k"), m.end("k"), m["kq"], m.end()))
                i = m.end()
                continue
        c = text[i]
        if is_delimiter(text, i):
            i = skip_string(text, i, close)
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif c == "," and depth == 0:
            expect_key = True
        i += 1
    return ObjectLiteral(open_idx, close, tuple(keys), spread)


def enclosing_open(text: str, pos: int) -> int:
    """Index of the innermost unclosed ``{`` before ``pos`` (raw scan), or -1."""
    depth = 0
    for i in range(pos - 1, max(-1, pos - MAX_SCAN), -1):
        c = text[i]
        if c == "}":
            depth += 1
        elif c == "{":
            if depth == 0:
                return i
            depth -= 1
    return -1

"""Where the comments, docstrings and string literals of a source file are.

Contracts:

* :func:`spans` returns the sorted, non-overlapping ``(start, end, kind)`` token spans of
  ``text``: ``kind`` is ``"comment"`` (``#``, ``//``, ``/* */``, and a Python triple-quoted
  string standing alone as a statement: a docstring) or ``"string"``. It is a lexer of
  one regular expression per language family, not a parser: a JavaScript regex literal
  holding a quote may be taken for the start of a string, which then ends at the end of
  its line (strings other than template and triple-quoted ones never span lines).
* :class:`Mask` answers, for an offset, which span holds it, so that the engine can drop
  a hit that lies in prose (a comment or a docstring quoting an old name) or inside a
  larger string (a test title ``'receives "conversation.item.created"'``).
* Languages without a lexer here (JSON, HTML, manifests) get an empty mask.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .model import Lang

_C_FAMILY = re.compile(
    r"""//[^\n]*|/\*.*?(?:\*/|\Z)"""
    r"""|@"(?:""|[^"])*"?"""  # C# verbatim string
    r"""|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?|`(?:\\.|[^`\\])*`?""",
    re.S,
)
_PYTHON = re.compile(
    r"""\#[^\n]*"""
    r"""|(?P<pre>[rRbBuUfF]{0,2})(?P<tq>'''(?:\\.|.)*?(?:'''|\Z)|\"\"\"(?:\\.|.)*?(?:\"\"\"|\Z))"""
    r"""|[rRbBuUfF]{0,2}(?:"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)""",
    re.S,
)
_YAML = re.compile(r"""(?:^|(?<=\s))\#[^\n]*|"(?:\\.|[^"\\\n])*"?|'(?:''|[^'\n])*'?""", re.M)
_LEXERS: dict[Lang, re.Pattern[str]] = {
    Lang.PYTHON: _PYTHON,
    Lang.JS: _C_FAMILY,
    Lang.TS: _C_FAMILY,
    Lang.TSX: _C_FAMILY,
    Lang.CSHARP: _C_FAMILY,
    Lang.JAVA: _C_FAMILY,
    Lang.GO: _C_FAMILY,
    Lang.YAML: _YAML,
}


def _standalone(text: str, start: int, end: int) -> bool:
    """The token is alone on its lines (a docstring or a bare string statement)."""
    line_start = text.rfind("\n", 0, start) + 1
    nl = text.find("\n", end)
    line_end = len(text) if nl < 0 else nl
    return not text[line_start:start].strip() and not text[end:line_end].strip()


def spans(text: str, lang: Lang) -> list[tuple[int, int, str]]:
    """Comment and string spans of ``text`` (see the module contract)."""
    lexer = _LEXERS.get(lang)
    if lexer is None:
        return []
    out: list[tuple[int, int, str]] = []
    for m in lexer.finditer(text):
        token = m.group()
        docstring = lang is Lang.PYTHON and m["tq"] and _standalone(text, m.start(), m.end())
        kind = "comment" if token.startswith(("#", "//", "/*")) or docstring else "string"
        out.append((m.start(), m.end(), kind))
    return out


@dataclass(frozen=True, slots=True)
class Mask:
    """Token spans of one text, searchable by offset."""

    text: str
    starts: list[int]
    tokens: list[tuple[int, int, str]]

    @classmethod
    def of(cls, text: str, lang: Lang) -> Mask:
        tokens = spans(text, lang)
        return cls(text, [t[0] for t in tokens], tokens)

    def at(self, offset: int) -> tuple[int, int, str] | None:
        """The span holding ``offset``, or ``None`` when it is code."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i >= 0:
            token = self.tokens[i]
            if token[0] <= offset < token[1]:
                return token
        return None

    def in_comment(self, offset: int) -> bool:
        token = self.at(offset)
        return token is not None and token[2] == "comment"

    def is_literal_start(self, offset: int) -> bool:
        """``offset`` opens a string literal (after any prefix such as ``f`` or ``@``)."""
        token = self.at(offset)
        if token is None:
            return True  # no lexer for this language: trust the rule's own pattern
        if token[2] != "string":
            return False
        prefix = self.text[token[0] : offset]
        return (len(prefix) <= 2 and prefix.isalpha()) or prefix in ("", "@")

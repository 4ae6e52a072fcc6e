"""Gitignore-syntax patterns, matched without third-party code.

Contracts:

* :class:`IgnoreSpec` holds the patterns of one ``.gitignore`` file (or of the
  ``--include`` / ``--exclude`` options) and answers :meth:`IgnoreSpec.match_file` for a
  path relative to the file's directory, ``/``-separated, with a trailing ``/`` for a
  directory. As in git, the last matching pattern decides, and ``!pattern`` re-includes.
* The syntax is git's (``gitignore(5)``): blank lines and ``#`` comments are skipped;
  trailing unescaped spaces are dropped; a ``/`` at the start or in the middle anchors the
  pattern to the directory, otherwise it matches at any depth; a trailing ``/`` matches
  directories only; ``*`` and ``?`` do not cross ``/``; ``[…]`` (with ``!`` or ``^`` to
  negate) is a character class; ``**/``, ``/**/`` and ``/**`` span directories; ``\\``
  escapes the next character.
* A pattern that matches a directory also matches every path below it, so callers may
  test file paths without walking (``--include 'src/'`` keeps the files under ``src``).

This replaces the ``pathspec`` package, which is not a declared dependency (issue 15: a
plain install crashed in every repository with a ``.gitignore``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


def _class(pattern: str, i: int) -> tuple[str, int] | None:
    """The regex for the ``[…]`` class opening at ``pattern[i]``, and the index after it."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    if j < len(pattern) and pattern[j] == "]":  # a leading ] is literal
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    if j >= len(pattern):
        return None  # unterminated: the [ is literal
    body = pattern[i + 1 + negate : j].replace("\\", "\\\\").replace("[", "\\[")
    return ("[^/" if negate else "[") + body + "]", j + 1


def _segment(segment: str) -> str:
    """Regex for one path segment (no ``/``) with ``*``, ``?``, ``[…]`` and escapes."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if c == "*":
            while i < len(segment) and segment[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            cls = _class(segment, i)
            if cls is not None:
                out.append(cls[0])
                i = cls[1]
                continue
            out.append(re.escape(c))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _strip_trailing_spaces(line: str) -> str:
    end = len(line)
    while end > 0 and line[end - 1] == " " and not (end > 1 and line[end - 2] == "\\"):
        end -= 1
    return line[:end]


def translate(line: str) -> tuple[re.Pattern[str], bool] | None:
    """``(regex, negated)`` for one gitignore line, or ``None`` for blanks and comments."""
    line = _strip_trailing_spaces(line.rstrip("\r\n"))
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated or line.startswith(("\\!", "\\#")):  # drop "!" or the escaping backslash
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    segments = line.lstrip("/").split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".+" if last else "(?:.+/)?")
        else:
            parts.append(_segment(segment) + ("" if last else "/"))
    body = "".join(parts)
    prefix = "" if anchored else "(?:.+/)?"
    suffix = "/.*" if dir_only else "(?:/.*)?"
    return re.compile(f"^{prefix}{body}{suffix}$", re.S), negated


@dataclass(frozen=True, slots=True)
class IgnoreSpec:
    """Compiled gitignore patterns, in file order."""

    patterns: tuple[tuple[re.Pattern[str], bool], ...]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreSpec:
        compiled = (translate(line) for line in lines)
        return cls(tuple(p for p in compiled if p is not None))

    def match_file(self, path: str) -> bool:
        """Whether ``path`` (relative, ``/``-separated; directories end in ``/``) matches."""
        matched = False
        for regex, negated in self.patterns:
            if regex.match(path):
                matched = not negated
        return matched

    def __bool__(self) -> bool:
        return bool(self.patterns)

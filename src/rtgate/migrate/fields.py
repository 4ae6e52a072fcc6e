"""Preview session fields outside a literal ``session.update``.

Real apps rarely send the session as one literal. They assign fields one by one
(``session["voice"] = …``, ``this.sessionConfig.turn_detection = …``), build a default
config object that is sent later, or declare the session's shape as a pydantic model, a
TypeScript type, a Go struct or a YAML file. This analyzer finds those; the payload
analyzer (:mod:`rtgate.migrate.payloads`) keeps the literal ``session.update`` case.

Contracts:

* *Strong* fields (``input_audio_format``, ``output_audio_format``,
  ``input_audio_transcription``, ``input_audio_noise_reduction``,
  ``max_response_output_tokens``) exist only in the Preview Realtime session: any
  declaration, key or assignment of one is reported.
* *Weak* fields (``voice``, ``modalities``, ``turn_detection``, ``temperature``, ``speed``)
  are common words: they are reported only when assigned on a receiver whose name says
  ``session`` (``session["voice"] = …``, ``x.session.voice = …``), or when declared in the
  same object literal as a strong field, or at the same indentation within
  :data:`NEAR_LINES` lines of a strong field's declaration (a class, interface, struct or
  YAML mapping).
* A key whose value is a string naming the GA location (``"input_audio_format":
  "audio.input.format"``) is a Preview→GA mapping table, not a Preview session: skipped.
* Hits carry no edit: these shapes are moved by hand.

Rule evaluated here: ``session-preview-field`` (docs/protocol.md, Preview dialect).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rtgate.protocol.dialects import PREVIEW_SESSION_FIELDS

from .literals import enclosing_open, parse_object
from .model import Hit
from .payloads import field_change

STRONG: frozenset[str] = frozenset(
    {
        "input_audio_format",
        "output_audio_format",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "max_response_output_tokens",
    }
)
WEAK: frozenset[str] = frozenset(PREVIEW_SESSION_FIELDS) - STRONG
NEAR_LINES = 30

_ALL = "|".join(sorted(PREVIEW_SESSION_FIELDS, key=len, reverse=True))
_STRONG = "|".join(sorted(STRONG, key=len, reverse=True))
# session["voice"] = …, session_config['turn_detection'] = … (the match starts at "session":
# a receiver prefix such as ``self.`` or ``this.current_`` needs no matching, and a leading
# ``[\w.]*`` made the regex retry at every character of every file).
_INDEX_ASSIGN = re.compile(
    rf"""session\w*(?:["']\])?\s*\[\s*(?P<q>["'])(?P<f>{_ALL})(?P=q)\s*\]\s*=(?!=)""",
    re.I,
)
# x.session.voice = …, this.sessionConfig.input_audio_format = …
_ATTR_ASSIGN = re.compile(rf"""session\w*\.(?P<f>{_ALL})\s*=(?![=>])""", re.I)
# A declaration or key at the start of a line: pydantic/dataclass field, TS member, YAML
# key, JS object key, keyword argument.
_DECLARATION = re.compile(
    rf"""^(?P<ind>[ \t]*)(?:(?:readonly|public|private)\s+)?"""
    rf"""(?P<kq>["']?)(?P<f>{_ALL})(?P=kq)\??[ \t]*(?::(?!:)|=(?![=>]))""",
    re.M,
)
# Go struct tags: `json:"input_audio_format,omitempty"`
_GO_TAG = re.compile(rf"""json:"(?P<f>{_ALL})[,"]""")
# A key anywhere (for object literals that hold a strong field): "k": / k: / 'k' =>
_STRONG_KEY = re.compile(rf"""(?P<kq>\\?["']?)(?P<f>{_STRONG})(?P=kq)\s*:(?!:)""")
_GA_VALUE = re.compile(r"""\s*["'](?:audio\.(?:input|output)|output_modalities|max_output_tokens)""")


def _hit(field: str, start: int) -> Hit:
    target = PREVIEW_SESSION_FIELDS[field]
    return Hit(
        "session-preview-field",
        start,
        start + len(field),
        {"field": field, "change": field_change(field, target)},
    )


def _maps_to_ga(text: str, value_start: int) -> bool:
    return _GA_VALUE.match(text, value_start) is not None


def _assignments(text: str) -> Iterator[Hit]:
    for pattern in (_INDEX_ASSIGN, _ATTR_ASSIGN):
        for m in pattern.finditer(text):
            yield _hit(m["f"], m.start("f"))


def _objects(text: str) -> Iterator[Hit]:
    """Every Preview key of an object literal that holds a strong field."""
    seen: set[int] = set()
    for m in _STRONG_KEY.finditer(text):
        open_idx = enclosing_open(text, m.start())
        if open_idx < 0 or open_idx in seen:
            continue
        seen.add(open_idx)
        obj = parse_object(text, open_idx)
        if obj is None:
            continue
        keys = [k for k in obj.keys if k.name in PREVIEW_SESSION_FIELDS]
        if not any(k.name in STRONG for k in keys):
            continue
        for key in keys:
            if not _maps_to_ga(text, key.value):
                yield _hit(key.name, key.start)


def _declarations(text: str) -> Iterator[Hit]:
    found = [m for m in _DECLARATION.finditer(text) if not _maps_to_ga(text, m.end())]
    strong = [m for m in found if m["f"] in STRONG]
    if not strong:
        return
    lines = {m.start(): text.count("\n", 0, m.start()) for m in found}
    for m in found:
        if m["f"] in STRONG:
            yield _hit(m["f"], m.start("f"))
            continue
        line = lines[m.start()]
        if any(s["ind"] == m["ind"] and abs(lines[s.start()] - line) <= NEAR_LINES for s in strong):
            yield _hit(m["f"], m.start("f"))


def _go_tags(text: str) -> Iterator[Hit]:
    found = list(_GO_TAG.finditer(text))
    if any(m["f"] in STRONG for m in found):
        for m in found:
            yield _hit(m["f"], m.start("f"))


def analyze(text: str) -> Iterator[Hit]:
    """Preview session fields assigned, collected or declared outside a session.update."""
    yield from _assignments(text)
    if not any(name in text for name in STRONG):
        return
    yield from _objects(text)
    yield from _declarations(text)
    if 'json:"' in text:
        yield from _go_tags(text)

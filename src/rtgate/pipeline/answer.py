"""Answers that behave: the voice preamble, answer shapes, and where an answer ends.

Small models (the embedded SmolLM2-135M) follow length and format instructions loosely and
may talk until the token cap. Profiles with ``voice_preamble`` on (the embedded default;
docs/engines.md, "What the embedded profile adds") get three things from this module:

* :data:`VOICE_PREAMBLE`, appended to the system message after the session's or
  response's instructions, which come first and win where they say otherwise;
* :func:`answer_limit_for`: the *shape* the instructions (first) or the user's last
  message ask for, read from plain phrases (``one word``, ``yes or no``, ``one
  sentence``, ``a list of three``, ``in detail``), else the default of a brief spoken
  answer; see the table on :func:`answer_limit_for`;
* :class:`AnswerCutter`: a pure reader of the streamed text that says where the answer
  ends at a natural boundary (after the Nth sentence, word or list item; past the soft
  budget at the next sentence end; past the hard budget at the next clause end; for
  sentence counts, past the last budget at the next word end), so the engine stops
  generating there instead of running to the cap.

Nothing here does I/O; engines that generate in pieces apply the cutter to their stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VOICE_PREAMBLE = "Your reply is spoken aloud: keep it to one or two short sentences unless asked otherwise."
"""Added after the instructions. Short on purpose: a 135M model repeats long preambles
back ("no lists or emoji" turned up in its answers when we tried)."""

_NUMBERS = {
    "one": 1, "a": 1, "an": 1, "a single": 1, "single": 1, "exactly one": 1, "1": 1,
    "two": 2, "2": 2, "three": 3, "3": 3, "four": 4, "4": 4, "five": 5, "5": 5,
}  # fmt: skip
_COUNT = r"(exactly one|a single|single|one|two|three|four|five|an|a|[1-5])"
_WORDS_RE = re.compile(rf"\b{_COUNT}\s+(?:short\s+|single\s+)?words?\b", re.I)
_YES_NO_RE = re.compile(r"\byes\s+or\s+no\b", re.I)
_SENTENCES_RE = re.compile(rf"\b{_COUNT}\s+(?:short\s+|brief\s+|single\s+|simple\s+)?sentences?\b", re.I)
_LIST_RE = re.compile(
    rf"\b(?:list\s+(?:of\s+)?{_COUNT}"
    rf"|{_COUNT}\s+(?:\w+\s+)?(?:items|things|examples|ideas|names|fruits|colou?rs|animals))\b",
    re.I,
)
_LONG_RE = re.compile(
    r"\b(in detail|detailed|at length|long (?:answer|story|explanation)|a story|paragraphs?|essay"
    r"|step by step)\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class AnswerLimit:
    """Where a generated answer ends (token counts are the engine's output tokens).

    The answer ends at the first of: ``words`` words; ``sentences`` sentences;
    ``items`` list items (one per line); past ``soft_tokens`` the next sentence end;
    past ``hard_tokens`` the next clause end (``,`` ``;`` ``:`` or a line end); past
    ``last_tokens`` the next word end, for a sentence with no clause end in time. ``None``
    turns a rule off. ``grammar`` (GBNF) constrains the start of the answer where an
    engine supports it (yes/no answers begin with Yes or No; a grammar for one-word
    answers made SmolLM2 glue words together, "Theresnotsense", so those are cut
    instead). The client's ``max_output_tokens`` still applies on top.
    """

    shape: str = "brief"
    sentences: int | None = 2
    words: int | None = None
    items: int | None = None
    soft_tokens: int | None = 40
    hard_tokens: int | None = 64
    last_tokens: int | None = None
    grammar: str | None = None


BRIEF = AnswerLimit()
_YES_NO_GRAMMAR = r"""root ::= ("Yes" | "No") ("." | "!" | "," [^\n]*)"""
SENTENCE_HARD_TOKENS = 20
"""Per sentence asked for: past it a sentence ends at its next clause end (≈ 90
characters, 5 s of espeak-ng speech at 17-20 characters a second)."""
SENTENCE_LAST_TOKENS = 26
"""Per sentence asked for: past it a sentence ends at its next word end (≈ 120
characters, at most ≈ 7.5 s of speech: we measured up to 0.26 s a token), for
sentences with no clause end in time. With only a clause end past 28 tokens, 2 of 29
spoken one-sentence answers ran 9.0 s (issue 19 asks ≤ 8 s; benchmarks/bench_answers.py)."""


def answer_limit_for(instructions: str | None, user_text: str | None) -> AnswerLimit:
    """The shape asked for: the instructions are read first, then the user's message.

    ============================ ============================================================
    phrase                       limit
    ============================ ============================================================
    ``one word`` / ``N words``   N words
    ``yes or no``                one sentence beginning with Yes or No (grammar)
    ``one sentence`` / ``N …``   N sentences; per sentence, hard 20 tokens, last 26
    ``a list of three`` / …      three list items, one per line
    ``in detail``, ``story``, …  no sentence count; soft budget 160 tokens, hard 240
    (none)                       brief: two sentences, soft budget 40 tokens, hard 64
    ============================ ============================================================
    """
    for text in (instructions, user_text):
        if text:
            limit = _limit_in(text)
            if limit is not None:
                return limit
    return BRIEF


def _limit_in(text: str) -> AnswerLimit | None:
    if match := _WORDS_RE.search(text):
        n = _NUMBERS[match.group(1).lower()]
        return AnswerLimit(f"{n} word(s)", sentences=1, words=n, soft_tokens=None, hard_tokens=8 * n)
    if _YES_NO_RE.search(text):
        return AnswerLimit(
            "yes or no", sentences=1, soft_tokens=None, hard_tokens=24, grammar=_YES_NO_GRAMMAR
        )
    if match := _SENTENCES_RE.search(text):
        n = _NUMBERS[match.group(1).lower()]
        return AnswerLimit(
            f"{n} sentence(s)",
            sentences=n,
            soft_tokens=None,
            hard_tokens=SENTENCE_HARD_TOKENS * n,
            last_tokens=SENTENCE_LAST_TOKENS * n,
        )
    if match := _LIST_RE.search(text):
        n = _NUMBERS[next(g for g in match.groups() if g).lower()]
        return AnswerLimit(f"list of {n}", sentences=None, items=n, soft_tokens=None, hard_tokens=24 * n)
    if _LONG_RE.search(text):
        return AnswerLimit("long", sentences=None, soft_tokens=160, hard_tokens=240)
    return None


_ITEM_RE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*\S")
_CLOSERS = "\"')]»”’"


class AnswerCutter:
    """Reads an answer as it streams and says where it ends (see :class:`AnswerLimit`).

    :meth:`feed` takes one streamed piece (one token) and returns the part of it that
    belongs to the answer and whether the answer ends there. A sentence ends at ``. ! ?``
    (after closing quotes) followed by white space; a piece that starts with that white
    space is the one that confirms the end, so generation runs one token past it and the
    answer never keeps the space. A "sentence" without a letter (``1.``) is not one.
    """

    def __init__(self, limit: AnswerLimit) -> None:
        self.limit = limit
        self.tokens = 0
        self.sentences = 0
        self.words = 0
        self.items = 0
        self._line = ""
        self._sentence_has_letter = False
        self._after_terminal = False
        self._after_clause = False
        self._in_word = False
        self.ended = False

    def feed(self, piece: str) -> tuple[str, bool]:
        """The part of ``piece`` to keep, and whether the answer ends after it."""
        if self.ended:
            return "", True
        self.tokens += 1
        for i, ch in enumerate(piece):
            if self._boundary_before(ch):
                self.ended = True
                return piece[:i], True
            self._read(ch)
        return piece, False

    def _boundary_before(self, ch: str) -> bool:
        """Whether the answer ends before ``ch`` (updating the counts it completes)."""
        limit = self.limit
        space = ch.isspace()
        if space and self._in_word:
            self.words += 1
            if limit.words is not None and self.words >= limit.words:
                return True
            if limit.last_tokens is not None and self.tokens > limit.last_tokens:
                return True
        if ch == "\n" and self._line_ends():
            return True
        if space and self._after_terminal and self._sentence_has_letter and self._end_sentence():
            return True
        hard = limit.hard_tokens
        return space and self._after_clause and hard is not None and self.tokens > hard

    def _line_ends(self) -> bool:
        """A line ends: count a list item, or a line of prose without a full stop as a
        sentence; past the hard budget a line end outside a list ends the answer."""
        limit = self.limit
        line, self._line = self._line, ""
        if _ITEM_RE.match(line):
            self.items += 1
            if limit.items is not None and self.items >= limit.items:
                return True
        elif (
            line.strip()
            and limit.items is None
            and self._sentence_has_letter
            and not self._after_terminal
            and self._end_sentence()
        ):
            return True
        return limit.hard_tokens is not None and self.tokens > limit.hard_tokens and self.items == 0

    def _end_sentence(self) -> bool:
        self.sentences += 1
        self._sentence_has_letter = False
        limit = self.limit
        if limit.sentences is not None and self.sentences >= limit.sentences:
            return True
        budget = limit.soft_tokens if limit.soft_tokens is not None else limit.hard_tokens
        return budget is not None and self.tokens > budget

    def _read(self, ch: str) -> None:
        if ch != "\n":
            self._line += ch
        self._in_word = not ch.isspace()
        if ch.isalpha():
            self._sentence_has_letter = True
        if ch in ".!?…":
            self._after_terminal = True
        elif ch not in _CLOSERS:
            self._after_terminal = False
        self._after_clause = ch in ",;:—"

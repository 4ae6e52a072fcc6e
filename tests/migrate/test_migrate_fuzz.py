"""Property tests: the scanner never raises, and --fix output always parses back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rtgate.migrate.engine import scan_text
from rtgate.migrate.fixer import fix_text, parses, syntax_errors
from rtgate.migrate.model import Lang

TOKENS = [
    '"session.update"',
    '"session"',
    "session",
    ":",
    "=",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    '"modalities"',
    '"type"',
    '"realtime"',
    '"response.text.delta"',
    "'response.audio.delta'",
    '"OpenAI-Beta"',
    '"realtime=v1"',
    '"openai-beta.realtime-v1"',
    '\\"',
    "\n",
    " ",
    "x",
    '"wss://h/openai/realtime?api-version=v&deployment=d"',
    ".beta.realtime.connect(",
    '"format"',
    '"pcm16"',
    '"role"',
    '"assistant"',
    '"content"',
    '"text"',
    "...",
    "**",
    '"conversation.item.create"',
    '"item"',
    "# rtgate: ignore",
    "`",
    "'",
    '"',
]
texts = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts, st.sampled_from([Lang.PYTHON, Lang.JS, Lang.CSHARP, Lang.GO, Lang.JSON]))
def test_scan_never_raises(text: str, lang: Lang) -> None:
    """Any text of any kind scans without an exception, findings inside the text."""
    for finding in scan_text(text, lang):
        assert 1 <= finding.line <= text.count("\n") + 1


@settings(max_examples=100, deadline=None)
@given(texts, st.sampled_from([Lang.PYTHON, Lang.JS, Lang.TS, Lang.JSON]))
def test_fixed_text_parses_when_original_parses(text: str, lang: Lang) -> None:
    """fix_text returns text that reads exactly as well as the original: it parses when the
    original did, and a JS/TS original's unreadable parts stay the same (Python and JSON
    originals that do not parse are never fixed)."""
    fixed, _ = fix_text(text, lang)
    if fixed is not None:
        before = syntax_errors(text, lang)
        assert before is not None
        assert syntax_errors(fixed, lang) == before
        assert parses(fixed, lang) or before


ENTRIES = [
    '"modalities": ["text"]',
    '"voice": "alloy"',
    '"type": "realtime"',
    '"max_response_output_tokens": 5',
    '"audio": {"input": {"format": "pcm16"}}',
    '"instructions": "a, b: c {x}"',
    '"max_output_tokens": 7',
]
EVENTS = ['"response.text.delta"', "'response.audio_transcript.done'", '"session.created"']


@st.composite
def python_programs(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(ENTRIES), unique=True, max_size=5))
    sep = ",\n    " if draw(st.booleans()) else ", "
    event = draw(st.sampled_from(EVENTS))
    headers = draw(
        st.sampled_from(
            [
                '{"OpenAI-Beta": "realtime=v1"}',
                '{"a": 1, "OpenAI-Beta": "realtime=v1"}',
                '{\n    "OpenAI-Beta": "realtime=v1",\n    "a": 1,\n}',
            ]
        )
    )
    return (
        f'x = {{"type": "session.update", "session": {{{sep.join(keys)}}}}}\n'
        f"if e == {event}:\n    pass\nh = {headers}\n"
    )


@settings(max_examples=100, deadline=None)
@given(python_programs())
def test_fix_of_valid_python_compiles_and_is_idempotent(text: str) -> None:
    """On valid programs --fix yields compiling code and a second pass changes nothing."""
    compile(text, "<t>", "exec")
    fixed, reason = fix_text(text, Lang.PYTHON)
    assert reason == ""
    result = fixed if fixed is not None else text
    compile(result, "<t>", "exec")
    assert fix_text(result, Lang.PYTHON) == (None, "")
    assert not any(f.fixable for f in scan_text(result, Lang.PYTHON))

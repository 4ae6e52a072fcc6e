"""--fix migrates a literal session.update whole, or leaves it alone and says why (issue 15)."""

from __future__ import annotations

import ast
import json

import pytest

from rtgate.migrate.engine import scan_text
from rtgate.migrate.fixer import fix_text
from rtgate.migrate.model import Lang
from rtgate.protocol.errors import RealtimeError
from rtgate.protocol.session import RealtimeSessionConfig, validate_session

PY_UPDATE = '''\
async def configure(conn):
    await conn.session.update(
        session={
            "instructions": "Be brief.",
            "modalities": ["text", "audio"],
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "g711_ulaw",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            "input_audio_transcription": {"model": "whisper-1"},
            "temperature": 0.8,
            "max_response_output_tokens": 512,
        }
    )
'''

PY_FIXED = '''\
async def configure(conn):
    await conn.session.update(
        session={
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    "transcription": {"model": "whisper-1"},
                },
                "output": {
                    "voice": "alloy",
                    "format": {"type": "audio/pcmu"},
                },
            },
            "max_output_tokens": 512,
        }
    )
'''


def _session_dict(source: str) -> dict[str, object]:
    call = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and n.keywords)
    value = ast.literal_eval(call.keywords[0].value)
    assert isinstance(value, dict)
    return value


def test_python_update_is_rewritten_whole() -> None:
    """Formats become objects, voice/turn_detection/transcription move under audio,
    modalities keeps one value, max tokens is renamed, temperature is dropped, type added."""
    fixed, reason = fix_text(PY_UPDATE, Lang.PYTHON)
    assert reason == ""
    assert fixed == PY_FIXED


def test_fixed_python_session_validates_as_ga() -> None:
    """The rewritten session is accepted by rtgate's strict GA session model (no
    unknown_parameter), while the Preview original is rejected."""
    with pytest.raises(RealtimeError):
        validate_session(_session_dict(PY_UPDATE))
    fixed, _ = fix_text(PY_UPDATE, Lang.PYTHON)
    assert fixed is not None
    config = validate_session(_session_dict(fixed))
    assert isinstance(config, RealtimeSessionConfig)
    assert config.output_modalities == ["audio"]
    assert config.audio.output.voice == "alloy"
    assert config.audio.output.format.type == "audio/pcmu"
    assert config.audio.input.transcription is not None
    assert config.max_output_tokens == 512


def test_rewrite_is_idempotent() -> None:
    """A second --fix finds nothing to change in the rewritten update."""
    fixed, _ = fix_text(PY_UPDATE, Lang.PYTHON)
    assert fixed is not None
    assert fix_text(fixed, Lang.PYTHON) == (None, "")
    assert not [f for f in scan_text(fixed, Lang.PYTHON) if f.rule.id.startswith("session-")]


def test_js_one_line_update_keeps_its_style() -> None:
    """A one-line JS object stays on one line, with bare keys and its own quotes."""
    text = (
        "ws.send(JSON.stringify({ type: 'session.update', session: { modalities: ['text'], "
        "voice: VOICE, input_audio_format: 'g711_alaw', temperature: 0.6 } }));\n"
    )
    fixed, reason = fix_text(text, Lang.JS)
    assert reason == ""
    assert fixed == (
        "ws.send(JSON.stringify({ type: 'session.update', session: { type: 'realtime', "
        "output_modalities: ['text'], audio: { input: { format: { type: 'audio/pcma' } }, "
        "output: { voice: VOICE } } } }));\n"
    )


def test_ts_multi_line_update_is_reindented() -> None:
    """A multi-line TS object keeps its indentation step; moved values are re-indented."""
    text = (
        "client.send({\n"
        '  type: "session.update",\n'
        "  session: {\n"
        '    voice: "verse",\n'
        "    turn_detection: {\n"
        '      type: "semantic_vad",\n'
        "    },\n"
        "  },\n"
        "});\n"
    )
    fixed, _ = fix_text(text, Lang.TS)
    assert fixed == (
        "client.send({\n"
        '  type: "session.update",\n'
        "  session: {\n"
        '    type: "realtime",\n'
        "    audio: {\n"
        "      input: {\n"
        "        turn_detection: {\n"
        '          type: "semantic_vad",\n'
        "        },\n"
        "      },\n"
        "      output: {\n"
        '        voice: "verse",\n'
        "      },\n"
        "    },\n"
        "  },\n"
        "});\n"
    )


def test_json_update_is_rewritten() -> None:
    """A session.update stored as JSON is rewritten and stays valid JSON."""
    text = json.dumps({"type": "session.update", "session": {"voice": "alloy", "modalities": ["audio"]}})
    fixed, _ = fix_text(text, Lang.JSON)
    assert fixed is not None
    session = json.loads(fixed)["session"]
    assert session == {"type": "realtime", "audio": {"output": {"voice": "alloy"}}, "output_modalities": ["audio"]}
    validate_session(session)


@pytest.mark.parametrize(
    ("session", "reason"),
    [
        ('{"voice": "alloy", "input_audio_format": FMT}', "'input_audio_format' is not a Preview format string literal"),
        ('{"voice": "alloy", "modalities": MODES}', "'modalities' is not a literal list of 'text' / 'audio'"),
        ('{"voice": "alloy", **BASE}', "spreads another object"),
        ('{"voice": "alloy", VOICE_KEY: 1}', "'VOICE_KEY' is a variable, not a literal key"),
        ('{"voice": "alloy",  # warm\n "turn_detection": None}', "holds comments"),
        ('{"voice": "alloy", "audio": {"input": {}}}', "it already has 'audio'"),
        ('{"voice": "alloy", "voice": "echo"}', "a key appears twice"),
        ('{"type": "transcription", "input_audio_format": "pcm16"}', "not 'realtime'"),
    ],
)
def test_update_not_self_contained_is_left_alone(session: str, reason: str) -> None:
    """An update --fix cannot rewrite completely is not touched, and every Preview-field
    finding says why."""
    text = f'x = {{"type": "session.update", "session": {session}}}\n'
    assert fix_text(text, Lang.PYTHON) == (None, "")
    findings = [f for f in scan_text(text, Lang.PYTHON) if f.rule.id.startswith("session-")]
    assert findings and not any(f.fixable for f in findings)
    assert any(f.rule.id == "session-preview-field" for f in findings)
    assert all(reason in f.change for f in findings if f.rule.id == "session-preview-field")


def test_other_languages_keep_report_only() -> None:
    """C# anonymous objects are not rewritten; the finding says where --fix rewrites."""
    text = 'var msg = new { type = "session.update", session = new { voice = "alloy" } };\n'
    [field] = [f for f in scan_text(text, Lang.CSHARP) if f.rule.id == "session-preview-field"]
    assert not field.fixable
    assert "rewritten in Python, JavaScript / TypeScript and JSON only" in field.change


def test_typed_update_keeps_its_type() -> None:
    """An update that already says type: 'realtime' is rewritten without a second type."""
    text = 'x = {"type": "session.update", "session": {"type": "realtime", "voice": "alloy"}}\n'
    fixed, _ = fix_text(text, Lang.PYTHON)
    assert fixed == (
        'x = {"type": "session.update", "session": {"type": "realtime", '
        '"audio": {"output": {"voice": "alloy"}}}}\n'
    )

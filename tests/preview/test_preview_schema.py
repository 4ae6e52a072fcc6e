"""Translated server events validate against the Preview SDK models (openai 1.x beta types).

The models come from ``.venv-preview`` (``scripts/make-preview-venv.sh``); the validation runs
there in a subprocess, ``tests/preview/validate_preview.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from preview_strategies import PREVIEW_MODEL, ga_server_event, ga_session_from_preview

from rtgate.protocol.preview import (
    PREVIEW_SERVER_EVENT_TYPES,
    PreviewState,
    ga_server_to_preview,
    preview_sessions_response,
)

ROOT = Path(__file__).resolve().parents[2]
PREVIEW_PY = ROOT / ".venv-preview" / "bin" / "python"
VALIDATOR = Path(__file__).with_name("validate_preview.py")
FIXTURES = ROOT / "tests" / "fixtures" / "protocol"
# Sent by Preview servers, never listed in the SDK's beta union (see validate_preview.py).
OFF_UNION_TYPES = frozenset({"transcription_session.created"})

pytestmark = pytest.mark.skipif(
    not PREVIEW_PY.exists(),
    reason="no .venv-preview with the Preview SDK models: run scripts/make-preview-venv.sh",
)


def fixture_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        state = PreviewState(client_model=PREVIEW_MODEL)
        for line in path.read_text().splitlines():
            if line.strip():
                out += ga_server_to_preview(json.loads(line), state)
    return out


def generated_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(ga_server_event)
    def collect(event: dict[str, Any]) -> None:
        out.extend(ga_server_to_preview(event, PreviewState(client_model=PREVIEW_MODEL)))

    collect()
    return out


def rest_bodies() -> list[dict[str, Any]]:
    realtime = ga_session_from_preview(
        {"modalities": ["text", "audio"], "voice": "verse", "tool_choice": "f"}
    )
    transcription = ga_session_from_preview(
        {"input_audio_transcription": {"model": "whisper-1"}}, transcription=True
    )
    return [
        {
            "rest": "sessions",
            "body": preview_sessions_response(
                realtime, secret_value="ek_test", secret_expires_at=1, client_model=PREVIEW_MODEL
            ),
        },
        {
            "rest": "transcription_sessions",
            "body": preview_sessions_response(
                transcription, secret_value="ek_test", secret_expires_at=1
            ),
        },
    ]


def run_validator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PREVIEW_PY), str(VALIDATOR), *args], capture_output=True, text=True, timeout=60
    )


def test_translated_events_validate_against_preview_sdk(tmp_path: Path) -> None:
    """Every fixture and generated GA event, translated, is valid for the Preview SDK models;
    so are the Preview REST session responses."""
    events = fixture_events() + generated_events()
    path = tmp_path / "preview_events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [*events, *rest_bodies()]))
    result = run_validator(str(path))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_translated_event_has_a_type_outside_the_preview_schema() -> None:
    """Translated types ⊆ the beta union's literals (+ transcription_session.created)."""
    result = run_validator("--types")
    assert result.returncode == 0, result.stderr
    union = frozenset(json.loads(result.stdout))
    assert not PREVIEW_SERVER_EVENT_TYPES - union - OFF_UNION_TYPES
    emitted = {e["type"] for e in fixture_events() + generated_events()}
    assert emitted <= union | OFF_UNION_TYPES, emitted - union

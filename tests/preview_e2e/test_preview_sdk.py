"""A Preview (beta) client — openai 1.107 ``client.beta.realtime`` — against rtgate's bridge.

The client runs in ``.venv-preview`` (scripts/make-preview-venv.sh) as a subprocess,
``preview_client.py``, which plays every scenario once and validates each server event with
that SDK's own beta models; the tests below assert on what it recorded. The server is a real
rtgate on 127.0.0.1 with fake backends.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import fake_profiles, running_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PREVIEW_PY = ROOT / ".venv-preview" / "bin" / "python"
CLIENT = Path(__file__).with_name("preview_client.py")
MODEL = "gpt-4o-realtime-preview-2024-12-17"
KEY = "sk-test"
CLIENT_TIMEOUT_S = 60.0

Events = list[dict[str, Any]]


def _require_preview_venv() -> None:
    if not PREVIEW_PY.exists():
        pytest.skip(f"{PREVIEW_PY} is missing: run scripts/make-preview-venv.sh")
    probe = subprocess.run(
        [str(PREVIEW_PY), "-c", "import openai, websockets"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(
            ".venv-preview predates the [realtime] extra (no websockets): re-run scripts/make-preview-venv.sh"
        )


def _rest_unavailable(http_url: str) -> str | None:
    """Why the REST scenarios cannot run on this server, or ``None``."""
    reply = httpx.post(
        f"{http_url}/v1/realtime/sessions", json={"model": MODEL}, headers={"Authorization": f"Bearer {KEY}"}
    )
    if reply.status_code == 501:
        return (
            "the server has no ephemeral key store (app.state.rtgate.ephemeral, "
            "src/rtgate/server/ephemeral.py): Preview REST key minting cannot run"
        )
    return None


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    """Every scenario's record: ``{name: {"events", "invalid", "error", ...}}``."""
    _require_preview_venv()
    profiles = fake_profiles(llm=FakeLLM(), tts=FakeTTS(), stt=FakeSTT("what is the weather in paris"))
    with running_server(Settings(api_keys=(KEY,)), profiles=profiles, vad_factory=FakeVAD) as server:
        rest_reason = _rest_unavailable(server.http_url)
        argv = [str(PREVIEW_PY), str(CLIENT), "--port", str(server.port), "--key", KEY]
        if rest_reason is None:
            argv.append("--rest")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"preview_client.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout)
    results["_rest_skip_reason"] = rest_reason
    yield results


def scenario(run: dict[str, Any], name: str) -> Events:
    """The scenario's events, after checking it ran and every event validated."""
    record = run[name]
    assert record["error"] is None, f"{name} failed in the Preview client:\n{record['error']}"
    assert record["invalid"] == [], f"{name}: events the Preview SDK rejects: {record['invalid']}"
    events: Events = record["events"]
    return events


def types(events: Events) -> list[str]:
    out: list[str] = []
    for event in events:
        if not (out and out[-1] == event["type"] and event["type"].endswith(".delta")):
            out.append(event["type"])
    return out


def test_connect_gets_preview_session_created_then_conversation_created(run: dict[str, Any]) -> None:
    """A Preview socket opens with a flat session.created, then conversation.created."""
    events = scenario(run, "text")
    assert types(events[:2]) == ["session.created", "conversation.created"]
    session = events[0]["session"]
    assert session["object"] == "realtime.session"
    assert session["model"] == MODEL
    assert session["input_audio_format"] == "pcm16"
    assert sorted(session["modalities"]) == ["audio", "text"]
    assert "audio" not in session and "type" not in session


def test_text_turn(run: dict[str, Any]) -> None:
    """SPEC §10.1 in Preview names: response.text.* and conversation.item.created."""
    events = scenario(run, "text")
    updated = next(e for e in events if e["type"] == "session.updated")
    assert updated["session"]["modalities"] == ["text"]
    turn = types(events[events.index(updated) + 1 :])
    assert turn == [
        "conversation.item.created",
        "response.created",
        "response.output_item.added",
        "conversation.item.created",
        "response.content_part.added",
        "response.text.delta",
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["modalities"] == ["text"]
    assert done["output"][0]["content"] == [{"type": "text", "text": "You said: hi there"}]


def test_audio_turn(run: dict[str, Any]) -> None:
    """Preview audio turn: pcm16 in, commit, response.audio.* and response.audio_transcript.*."""
    events = scenario(run, "audio")
    seen = types(events)
    assert "input_audio_buffer.committed" in seen
    assert "response.audio.delta" in seen
    assert "response.audio_transcript.delta" in seen
    assert seen.index("response.audio.done") < seen.index("response.audio_transcript.done")
    assert seen.index("response.audio.done") < seen.index("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta")
    assert len(audio) > 0 and len(audio) % 2 == 0
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert transcript == "You said: what is the weather in paris"
    content = events[-1]["response"]["output"][0]["content"][0]
    assert content["type"] == "audio"
    assert content["transcript"] == transcript


def test_untranslatable_value_is_an_error_with_the_client_event_id(run: dict[str, Any]) -> None:
    """A Preview value with no GA form is answered with an error; the session goes on."""
    events = scenario(run, "untranslatable")
    error = next(e for e in events if e["type"] == "error")["error"]
    assert error["event_id"] == "evt_client_1"
    assert error["param"] == "session.input_audio_format"
    assert error["code"] == "invalid_value"
    assert events[-1]["type"] == "session.updated"


def test_transcription_intent_speaks_transcription_session(run: dict[str, Any]) -> None:
    """?intent=transcription: transcription_session.created and .updated, flat session."""
    events = scenario(run, "transcription")
    assert types(events) == ["transcription_session.created", "transcription_session.updated"]
    session = events[-1]["session"]
    assert session["input_audio_transcription"]["model"] == "gpt-4o-transcribe"
    assert session["input_audio_format"] == "pcm16"


def _rest(run: dict[str, Any], name: str) -> tuple[dict[str, Any], Events]:
    if run["_rest_skip_reason"]:
        pytest.skip(run["_rest_skip_reason"])
    events = scenario(run, name)
    return run[name]["rest"], events


def test_rest_sessions_mints_a_short_lived_key(run: dict[str, Any]) -> None:
    """POST /v1/realtime/sessions: Preview response shape, 60 s key that opens a session."""
    body, events = _rest(run, "rest_sessions")
    assert body["object"] == "realtime.session"
    assert body["modalities"] == ["text"]
    assert body["voice"] == "verse"
    assert body["client_secret"]["value"].startswith("ek_")
    assert 50 <= body["client_secret"]["expires_at"] - time.time() <= 61
    session = events[0]["session"]
    assert session["modalities"] == ["text"]
    assert session["instructions"] == "Be brief."
    assert session["voice"] == "verse"


def test_rest_transcription_sessions_key_opens_a_transcription_session(run: dict[str, Any]) -> None:
    """POST /v1/realtime/transcription_sessions: the key opens a transcription session."""
    body, events = _rest(run, "rest_transcription_sessions")
    assert body["object"] == "realtime.transcription_session"
    assert body["input_audio_transcription"]["model"] == "gpt-4o-transcribe"
    assert types(events) == ["transcription_session.created"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))

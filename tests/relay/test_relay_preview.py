"""A Preview client (openai 1.107 ``client.beta.realtime``) → rtgate → a GA upstream rtgate.

The path that rescues apps broken by the Preview shutdown. The client runs in
``.venv-preview`` as tests/preview_e2e/preview_client.py and validates every event with
that SDK's own beta models; its Preview model name routes to the GA upstream here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import CLIENT_KEY, Relay

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PREVIEW_PY = ROOT / ".venv-preview" / "bin" / "python"
CLIENT = ROOT / "tests" / "preview_e2e" / "preview_client.py"
CLIENT_TIMEOUT_S = 60.0


def _require_preview_venv() -> None:
    if not PREVIEW_PY.exists():
        pytest.skip(f"{PREVIEW_PY} is missing: run scripts/make-preview-venv.sh")


@pytest.fixture(scope="module")
def run(relay: Relay) -> dict[str, Any]:
    _require_preview_venv()
    argv = [str(PREVIEW_PY), str(CLIENT), "--port", str(relay.gateway.port), "--key", CLIENT_KEY]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"preview_client.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results: dict[str, Any] = json.loads(done.stdout)
    return results


@pytest.mark.parametrize("scenario", ["text", "audio", "untranslatable", "transcription"])
def test_preview_scenario_through_the_relay(run: dict[str, Any], scenario: str) -> None:
    """Each Preview scenario completes and every event validates against the beta models."""
    record = run[scenario]
    assert record["error"] is None, record["error"]
    assert record["invalid"] == []


def test_preview_text_turn_has_preview_names(run: dict[str, Any]) -> None:
    """GA upstream events reach the Preview client renamed: response.text.*, conversation.created."""
    kinds = [e["type"] for e in run["text"]["events"]]
    assert kinds[:2] == ["session.created", "conversation.created"]
    assert "response.text.delta" in kinds and "response.output_text.delta" not in kinds


def test_preview_untranslatable_value_is_answered_by_the_relay(run: dict[str, Any]) -> None:
    """A Preview value with no GA form gets an error with the client's event_id, nothing forwarded."""
    errors = [e for e in run["untranslatable"]["events"] if e["type"] == "error"]
    assert errors[0]["error"]["event_id"] == "evt_client_1"

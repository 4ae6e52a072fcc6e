"""Preview REST key minting (server/preview_rest.py): paths, TTL, auth and error bodies.

Plain HTTP against a real rtgate on 127.0.0.1; the SDK-driven happy path is in
test_preview_sdk.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import ServerHandle, running_server

pytestmark = pytest.mark.e2e

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=(KEY,)), vad_factory=FakeVAD) as handle:
        yield handle


def post(server: ServerHandle, path: str, body: object, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{server.http_url}{path}", json=body, headers=headers)


def assert_rest_error(reply: httpx.Response, status: int, code: str | None, param: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error


def test_default_ttl_is_one_minute(server: ServerHandle) -> None:
    """Preview keys lived 60 s unless the request asked otherwise."""
    reply = post(server, "/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"})
    assert reply.status_code == 200, reply.text
    secret = reply.json()["client_secret"]
    assert secret["value"].startswith("ek_")
    assert 55 <= secret["expires_at"] - time.time() <= 61


def test_requested_ttl_is_honoured(server: ServerHandle) -> None:
    """client_secret.expires_after.seconds sets the key lifetime."""
    body = {"client_secret": {"expires_after": {"anchor": "created_at", "seconds": 300}}}
    reply = post(server, "/v1/realtime/sessions", body)
    assert reply.status_code == 200, reply.text
    assert 295 <= reply.json()["client_secret"]["expires_at"] - time.time() <= 301


def test_ttl_below_minimum_is_refused(server: ServerHandle) -> None:
    """A TTL under 10 s is a 400 naming the Preview parameter."""
    body = {"client_secret": {"expires_at": {"anchor": "created_at", "seconds": 5}}}
    reply = post(server, "/v1/realtime/transcription_sessions", body)
    assert_rest_error(reply, 400, "integer_below_min_value", "client_secret.expires_at.seconds")


def test_azure_preview_path_with_api_version(server: ServerHandle) -> None:
    """Azure's /openai/realtimeapi/sessions?api-version=… answers with an api-key header."""
    reply = post(
        server,
        "/openai/realtimeapi/sessions?api-version=2025-04-01-preview",
        {"model": "gpt-4o-mini-realtime-preview", "voice": "verse"},
        headers={"api-key": KEY},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["voice"] == "verse"
    assert reply.json()["model"] == "gpt-4o-mini-realtime-preview"


def test_missing_key_is_401(server: ServerHandle) -> None:
    reply = post(server, "/openai/v1/realtime/sessions", {}, headers={})
    assert_rest_error(reply, 401, None)


def test_wrong_key_is_401(server: ServerHandle) -> None:
    reply = post(server, "/v1/realtime/sessions", {}, headers={"Authorization": "Bearer sk-wrong"})
    assert_rest_error(reply, 401, "invalid_api_key")


def test_ephemeral_key_cannot_mint_another(server: ServerHandle) -> None:
    """A minted key opens sockets; it does not mint keys."""
    key = post(server, "/v1/realtime/sessions", {}).json()["client_secret"]["value"]
    reply = post(server, "/v1/realtime/sessions", {}, headers={"Authorization": f"Bearer {key}"})
    assert_rest_error(reply, 401, "invalid_api_key")


def test_untranslatable_format_is_400_with_param(server: ServerHandle) -> None:
    """A Preview audio format with no GA form is a 400 naming the field."""
    reply = post(server, "/v1/realtime/sessions", {"input_audio_format": "pcm24"})
    assert_rest_error(reply, 400, "invalid_value")
    assert "input_audio_format" in reply.json()["error"]["param"]


def test_body_that_is_not_an_object_is_400(server: ServerHandle) -> None:
    reply = post(server, "/v1/realtime/sessions", ["model"])
    assert_rest_error(reply, 400, "invalid_type")

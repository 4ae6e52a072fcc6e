"""``rtgate migrate probe`` against rtgate on 127.0.0.1 (the real server from
``rtgate.testing.server``) and against small in-test fakes for the failure paths."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rtgate.migrate.probe import (
    ProbeConfig,
    _client_secret,
    load_utterance,
    probe,
    render_probe,
    resolve_urls,
)

from .helpers import run_cli

server = pytest.importorskip("rtgate.testing.server")


@pytest.fixture(scope="module")
def rtgate_url() -> Iterator[str]:
    with server.running_server(vad_factory=lambda: None) as handle:
        yield handle.base_url


def test_probe_passes_against_rtgate(rtgate_url: str) -> None:
    """Every verification item passes against rtgate's GA endpoint; exit status 0."""
    code, out = run_cli("probe", rtgate_url, "--api-key", "sk-test", "--timeout", "20")
    assert code == 0, out
    for name in (
        "ga-url",
        "session-update-typed",
        "session-update-untyped",
        "text-turn",
        "audio-turn",
    ):
        assert f"{name}" in out
    assert "FAIL" not in out and "5/5 checks passed" in out


def test_probe_json_output(rtgate_url: str) -> None:
    """--format json lists each check with pass/fail."""
    code, out = run_cli("probe", rtgate_url, "--api-key", "k", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["passed"] is True
    assert [c["result"] for c in doc["checks"]] == ["pass"] * 5


def test_url_with_api_version_fails_the_ga_url_check(rtgate_url: str) -> None:
    """A URL carrying api-version fails ga-url even though the server answers."""
    code, out = run_cli("probe", rtgate_url + "?api-version=2025-04-01-preview", "--api-key", "k")
    assert code == 1
    assert "ga-url" in out and "FAIL" in out


async def _preview_server(ws) -> None:  # type: ignore[no-untyped-def]
    """A Preview-era server: accepts session.update without type, emits beta names."""
    await ws.send(json.dumps({"type": "session.created", "event_id": "e0", "session": {}}))
    await ws.send(json.dumps({"type": "conversation.created", "event_id": "e1"}))
    async for raw in ws:
        event = json.loads(raw)
        kind = event["type"]
        if kind == "session.update":
            await ws.send(json.dumps({"type": "session.updated", "event_id": "e2", "session": {}}))
        elif kind == "response.create":
            for t in ("conversation.item.created", "response.text.delta", "response.done"):
                await ws.send(json.dumps({"type": t, "event_id": "e3", "delta": ""}))


def test_probe_fails_on_a_preview_server() -> None:
    """A server that speaks Preview fails the untyped-update, text and audio checks."""
    from websockets.asyncio.server import serve

    async def run() -> list:
        async with serve(_preview_server, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            return await probe(ProbeConfig(f"http://127.0.0.1:{port}/v1", "k", timeout=5))

    results = {r.name: r for r in asyncio.run(run())}
    assert results["ga-url"].passed and results["session-update-typed"].passed
    assert not results["session-update-untyped"].passed
    assert not results["text-turn"].passed and "response.text.delta" in results["text-turn"].detail
    assert not results["audio-turn"].passed
    assert "FAIL" in render_probe(list(results.values()))


def test_probe_reports_connection_failure() -> None:
    """A refused connection fails every check with the reason; exit status 1."""
    code, out = run_cli("probe", "http://127.0.0.1:9/v1", "--api-key", "k", "--timeout", "2")
    assert code == 1 and "connection failed" in out


class _Secrets(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        ok = self.path == "/openai/v1/realtime/client_secrets" and body["session"]["type"]
        payload = {"value": "ek_test", "expires_at": 4102444800, "session": body["session"]}
        data = json.dumps(payload).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_client_secret_minting() -> None:
    """--webrtc: POST …/realtime/client_secrets returns value and expires_at."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Secrets)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/openai/v1"
        config = ProbeConfig(base, "k", webrtc=True)
        result, key = asyncio.run(_client_secret(config, resolve_urls(base, "gpt-realtime")))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.passed and key == "ek_test"


@pytest.mark.parametrize(
    ("url", "ws", "rest"),
    [
        (
            "http://127.0.0.1:8000/openai/v1",
            "ws://127.0.0.1:8000/openai/v1/realtime?model=m",
            "http://127.0.0.1:8000/openai/v1",
        ),
        (
            "https://r.openai.azure.com/openai/v1/",
            "wss://r.openai.azure.com/openai/v1/realtime?model=m",
            "https://r.openai.azure.com/openai/v1",
        ),
        (
            "wss://api.openai.com/v1/realtime?model=x",
            "wss://api.openai.com/v1/realtime?model=x",
            "https://api.openai.com/v1",
        ),
    ],
)
def test_resolve_urls(url: str, ws: str, rest: str) -> None:
    """Base URLs and realtime URLs map to the GA WebSocket URL and the REST base."""
    urls = resolve_urls(url, "m")
    assert (urls.ws, urls.rest) == (ws, rest)


def test_bad_url_is_a_usage_error() -> None:
    """A URL without scheme or host exits 2."""
    assert run_cli("probe", "localhost", "--api-key", "k")[0] == 2


def test_bundled_utterance_is_24k_mono_pcm16() -> None:
    """The packaged utterance is 1 to 5 s of 24 kHz PCM16 mono."""
    pcm = load_utterance()
    assert 1.0 < len(pcm) / 48000 < 5.0


def test_probe_webrtc_against_rtgate(rtgate_url: str) -> None:
    """--webrtc mints an ephemeral key on rtgate and opens a session with it."""
    code, out = run_cli("probe", rtgate_url, "--api-key", "k", "--webrtc", "--format", "json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 0, out
    assert checks["ephemeral-session"]["result"] == "pass"

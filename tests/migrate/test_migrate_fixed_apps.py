"""A Preview-era app fixed by ``rtgate migrate check --fix`` runs on a GA server (issue 15).

Self-written Preview samples (``samples/``: Python with the openai-python beta client,
JavaScript with openai-node's ``openai/beta/realtime/ws``) are copied to a temporary
directory, fixed by the CLI, and run unchanged otherwise with the official SDKs against a
real ``rtgate serve --pipeline builtin`` on 127.0.0.1 (openai-node always dials ``wss://``, so
the JavaScript app reaches it through a TLS front with a certificate made for the test). The
app must complete a spoken turn
with no ``error`` event (``unknown_parameter`` or any other); every event it logged is
validated strictly against the openai-python SDK's GA models, and the session the server confirmed must
carry the settings the Preview code asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtgate.testing.validate import validate_server_event

from .helpers import HERE, run_cli

pytestmark = pytest.mark.e2e

SAMPLES = HERE / "samples"
NODE_MODULES = HERE / "node" / "node_modules"
KEY = "sk-migrate"
RUN_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Port of a real ``rtgate serve --pipeline builtin`` on 127.0.0.1."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as sink:  # a file, not a pipe nobody reads once started
        process = subprocess.Popen(
            [sys.executable, "-m", "rtgate.cli", "serve", "--pipeline", "builtin",
             "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=sink, env={**os.environ, "RTGATE_API_KEYS": KEY},
        )
    try:
        yield _wait_ready(process, log)
    finally:
        process.kill()
        process.wait(10)


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"rtgate serve exited:\n{log.read_text()[-3000:]}"
        text = log.read_text("utf-8", "replace")
        port = re.search(r"running on http://127\.0\.0\.1:(\d+)", text)
        if port and "Application startup complete" in text:
            return int(port.group(1))
        time.sleep(0.1)  # polling a start-up condition with a deadline
    raise AssertionError("rtgate serve never became ready")


@contextlib.contextmanager
def tls_front(port: int, workdir: Path) -> Iterator[tuple[int, Path]]:
    """``(TLS port, CA file)``: TLS on 127.0.0.1 passing bytes through to plain ``port``."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1], cert
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.close()


def _fix(tmp_path: Path, sample: str) -> Path:
    """Copy ``sample`` into ``tmp_path`` and fix it with the CLI; nothing may be left."""
    app = tmp_path / sample
    shutil.copy(SAMPLES / sample, app)
    before = app.read_text()
    code, out = run_cli("check", str(app), "--fix", "--no-progress")
    assert code == 0, out  # 0: fixed, no finding left
    assert app.read_text() != before
    return app


def _run(argv: list[str], cwd: Path, base_url: str, **extra_env: str,
         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the app; ``(events it logged, its summary)``. Fails on any error or exit status."""
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url, **extra_env}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "error" not in done.stderr.lower(), done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    summaries = [line["summary"] for line in lines if "summary" in line]
    assert len(summaries) == 1, done.stdout[-2000:]
    events = [line for line in lines if "summary" not in line]  # a late event may follow it
    for event in events:
        validate_server_event(event)
    return events, summaries[0]


def _check_turn(events: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, [e for e in events if e["type"] == "error"]
    assert kinds[0] == "session.created"
    assert "session.updated" in kinds
    done = [e for e in events if e["type"] == "response.done"]
    assert done and done[-1]["response"]["status"] == "completed", done
    assert summary["audio_bytes"] > 0, "the renamed audio handler received the spoken answer"
    assert summary["transcript"].strip(), "the renamed transcript handler received text"
    session: dict[str, Any] = summary["session"]
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["instructions"].startswith("You are a friendly assistant")
    assert session["audio"]["input"]["transcription"]["model"] == "whisper-1"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    return session


def test_fixed_python_app_completes_a_turn_with_the_openai_sdk(tmp_path: Path, server: int) -> None:
    app = _fix(tmp_path, "voice_assistant.py")
    assert "client.realtime.connect(" in app.read_text()
    events, summary = _run([sys.executable, str(app)], tmp_path, f"http://127.0.0.1:{server}/v1")
    session = _check_turn(events, summary)
    assert session["audio"]["output"]["voice"] == "alloy"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
    assert session["max_output_tokens"] == 4096


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_MODULES / "openai").is_dir()
                    or shutil.which("openssl") is None,
                    reason="Node, openai-node or openssl missing (scripts/setup.sh --test installs them)")
def test_fixed_javascript_app_completes_a_turn_with_openai_node(tmp_path: Path, server: int) -> None:
    app = _fix(tmp_path, "voice_assistant.mjs")
    assert "openai/realtime/ws" in app.read_text()
    (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    with tls_front(server, tmp_path) as (port, ca):
        events, summary = _run(["node", str(app)], tmp_path, f"https://127.0.0.1:{port}/v1",
                               NODE_EXTRA_CA_CERTS=str(ca))
    session = _check_turn(events, summary)
    assert session["audio"]["output"]["voice"] == "shimmer"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["max_output_tokens"] == "inf"


async def test_a_half_migrated_update_is_what_these_tests_would_catch(server: int) -> None:
    """The control: the update the old ``--fix`` wrote (``type`` added, Preview fields kept)
    is refused by the same server, so a fixed app that still sent one would fail above."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key=KEY)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "voice": "alloy"})  # type: ignore[typeddict-unknown-key]
        while True:
            event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 30))
            validate_server_event(event)
            if event["type"] in ("error", "session.updated"):
                break
    assert event["type"] == "error", event
    assert event["error"]["code"] == "unknown_parameter", event
    assert event["error"]["param"] == "session.voice", event

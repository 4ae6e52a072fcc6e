"""``rtgate serve --workers N`` and the SIGTERM drain, as a user runs them (issue 12).

Real ``rtgate serve`` processes (``--pipeline builtin``), the official SDK as the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from rtgate.testing.validate import validate_server_event

pytestmark = pytest.mark.e2e

KEY = "sk-test"
PORT_LINE = re.compile(r"(?:running on|workers on) http://127\.0\.0\.1:(\d+)")


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          ) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    with open(log, "wb") as sink:  # a file, not a pipe nobody reads once started
        process = subprocess.Popen(
            [sys.executable, "-m", "rtgate.cli", "serve", "--pipeline", "builtin", "--port", "0", *args],
            stderr=sink, stdout=subprocess.DEVNULL,
            env={**os.environ, "RTGATE_API_KEYS": KEY, **(env or {})},
        )
    try:
        port = _port(process, log)
        _until_ready(port, process, log)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _port(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    while process.poll() is None:  # start-up: wait until the server names its port
        found = PORT_LINE.search(log.read_text("utf-8", "replace"))
        if found:
            return int(found.group(1))
        assert time.monotonic() < deadline, "rtgate serve did not start"
        time.sleep(0.1)  # polling a start-up condition with a deadline
    raise AssertionError(f"rtgate serve exited during start-up:\n{log.read_text()[-3000:]}")


def _until_ready(port: int, process: subprocess.Popen[bytes], log: Path, workers: int = 1) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        text = log.read_text("utf-8", "replace")
        if text.count("Application startup complete") >= workers:
            return
        time.sleep(0.1)  # polling a start-up condition with a deadline
    raise AssertionError("rtgate serve never became ready")


def _wait_exit(process: subprocess.Popen[bytes], within: float) -> int:
    try:
        return process.wait(within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"rtgate serve still running {within} s after SIGTERM") from None


async def _text_turn(port: int, text: str) -> str:
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/openai/v1", api_key=KEY)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
        await conn.response.create()
        while True:
            event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 30))
            validate_server_event(event)
            if event["type"] == "response.done":
                assert event["response"]["status"] == "completed", event
                return str(event["response"]["output"][0]["content"][0]["text"])


async def test_two_workers_share_the_port_and_every_ephemeral_key(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as (process, port, log):
        _until_ready(port, process, log, workers=2)
        fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=fresh) as http:
            nodes = {(await http.get("/healthz")).json()["node"] for _ in range(40)}
            assert len(nodes) == 2, "both workers take connections"
            # A key minted by whichever worker opens a session on whichever worker.
            for n in range(6):
                minted = await http.post("/v1/realtime/client_secrets",
                                         headers={"Authorization": f"Bearer {KEY}"},
                                         json={"session": {"type": "realtime", "model": "gpt-realtime"}})
                assert minted.status_code == 200
                key = minted.json()["value"]
                async with websockets.connect(
                        f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                        additional_headers={"Authorization": f"Bearer {key}"}, proxy=None) as ws:
                    created = json.loads(await ws.recv())
                    assert created["type"] == "session.created", (n, created)
        answers = await asyncio.gather(*(_text_turn(port, f"hello {n}") for n in range(4)))
        assert all(answer for answer in answers)
        process.send_signal(signal.SIGTERM)
        assert _wait_exit(process, 30) == 0
    text = log.read_text()
    assert "all workers stopped" in text
    assert "Traceback" not in text


async def test_sigterm_drains_live_sessions_refuses_new_ones_then_ends_them(tmp_path: Path) -> None:
    env = {"RTGATE_DRAIN_TIMEOUT_S": "4"}
    with serve(tmp_path, env=env) as (process, port, log):
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with websockets.connect(url, additional_headers=headers, proxy=None) as live:
            assert json.loads(await live.recv())["type"] == "session.created"
            process.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                deadline = time.monotonic() + 10
                while (ready := await http.get("/readyz")).status_code == 200:
                    assert time.monotonic() < deadline, "readyz never reported the drain"
                    await asyncio.sleep(0.05)  # polls the server's state, orders nothing
                assert ready.status_code == 503 and ready.json()["status"] == "draining"
                assert (await http.get("/healthz")).status_code == 200  # alive all along

            # A new session is refused, with a reason and a close code the SDK retries on.
            async with websockets.connect(url, additional_headers=headers, proxy=None) as late:
                refused = json.loads(await late.recv())
                validate_server_event(refused)
                assert refused["error"]["code"] == "server_shutting_down"
                with pytest.raises(websockets.ConnectionClosed):
                    await late.recv()
                assert late.close_code == 1012

            # The live session goes on during the drain: a whole response.
            await live.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"]}}))
            await live.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "still there?"}]}}))
            await live.send(json.dumps({"type": "response.create"}))
            seen = []
            while not seen or seen[-1]["type"] != "response.done":
                seen.append(json.loads(await asyncio.wait_for(live.recv(), 10)))
            assert seen[-1]["response"]["status"] == "completed"

            # At the drain deadline it ends: an error saying why, then close 1012.
            while (event := json.loads(await asyncio.wait_for(live.recv(), 15)))["type"] != "error":
                pass
            validate_server_event(event)
            assert event["error"]["code"] == "server_shutting_down"
            assert event["error"]["type"] == "server_error"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(live.recv(), 10)
            assert live.close_code == 1012
        _wait_exit(process, 20)
    text = log.read_text()
    assert "drain deadline: ended 1 session(s)" in text
    assert "Traceback" not in text


async def test_sigterm_with_no_sessions_stops_at_once(tmp_path: Path) -> None:
    with serve(tmp_path, env={"RTGATE_DRAIN_TIMEOUT_S": "60"}) as (process, _, _log):
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _wait_exit(process, 20)
        assert time.monotonic() - started < 20  # not the 60 s drain window


async def test_workers_end_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as (process, port, log):
        _until_ready(port, process, log, workers=2)
        fresh = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=fresh) as http:
            pids = {(await http.get("/healthz")).json()["pid"] for _ in range(40)}
        assert len(pids) == 2
        process.kill()  # SIGKILL: the supervisor cannot pass anything on
        process.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            await asyncio.sleep(0.1)  # polling other processes' exit, with a deadline


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

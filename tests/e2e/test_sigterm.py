"""SIGTERM ends ``rtgate serve`` even after clients vanished mid-answer (issue 17, defect 1).

The leaked sessions used to keep uvicorn "Waiting for background tasks to complete" for
ever; only SIGINT ended the process.
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
from pathlib import Path

import pytest
import websockets

pytestmark = pytest.mark.e2e

EXIT_WITHIN_S = 30.0


def _serve(log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with open(log, "wb") as sink:  # a file, not a pipe nobody reads once started
        process = subprocess.Popen(
            [sys.executable, "-m", "rtgate.cli", "serve", "--pipeline", "builtin", "--port", "0"],
            stderr=sink, stdout=subprocess.DEVNULL,
            env={**os.environ, "RTGATE_API_KEYS": "sk-test"},
        )
    deadline = time.monotonic() + 120
    while process.poll() is None:  # start-up: wait until uvicorn names its port
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", log.read_text("utf-8", "replace"))
        if found:
            return process, int(found.group(1))
        assert time.monotonic() < deadline, "rtgate serve did not start"
        time.sleep(0.1)  # polling a start-up condition with a deadline
    raise AssertionError(f"rtgate serve exited during start-up:\n{log.read_text()[-2000:]}")


async def _mid_answer(port: int, *, abort: bool) -> websockets.ClientConnection:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                                  additional_headers={"Authorization": "Bearer sk-test"},
                                  max_size=None, proxy=None)
    await ws.recv()
    item = {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": " ".join(["word"] * 2000)}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"}))
    while json.loads(await ws.recv())["type"] != "response.output_audio.delta":
        pass
    if abort:
        ws.transport.abort()
    return ws


async def test_sigterm_exits_after_clients_vanished_mid_answer(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    process, port = _serve(log)
    try:
        for _ in range(3):
            await _mid_answer(port, abort=True)
        open_one = await _mid_answer(port, abort=False)  # one still streaming
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit after SIGTERM:\n{log.read_text()[-2000:]}") from None
        # uvicorn re-raises the captured SIGTERM once it has shut down gracefully.
        assert code in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log.read_text()
        open_one.transport.abort()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

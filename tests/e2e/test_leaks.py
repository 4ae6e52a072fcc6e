"""Clients that vanish mid-answer leave nothing behind (issue 17, defect 1: leak check).

Each client asks the builtin pipeline for a long spoken answer, reads a little of it and
drops the TCP connection (or closes normally). Every session must then end — "closed"
logged for each "opened" — the session gauge must come back to where it was, and the
process's resident memory must not grow with the number of clients (a leaked session
held 5–11 MB).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from rtgate.server.app import builtin_pipeline
from rtgate.server.settings import Settings
from rtgate.testing.server import ServerHandle, running_server
from rtgate.transport.connection import SessionRunner

pytestmark = pytest.mark.e2e

CLIENTS = 10
LONG_TEXT = " ".join(["word"] * 2000)
RSS_ALLOWANCE_MB = 40.0
"""Growth allowed for CLIENTS more aborted sessions once as many have warmed the process up
(allocator noise, client buffers included: 7–14 MB measured); leaking them took 50–110 MB."""


def _live(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class SessionLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.opened = 0
        self.closed = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("session ") and " opened " in message:
            self.opened += 1
        elif message.startswith("session ") and message.endswith(" closed"):
            self.closed += 1


@pytest.fixture
def session_log() -> Iterator[SessionLog]:
    handler = SessionLog()
    logger = logging.getLogger("rtgate.ws")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def _sessions(server: ServerHandle) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.http_url}/healthz")).json()["sessions"])


async def _vanish_mid_answer(server: ServerHandle, *, abort: bool) -> None:
    url = f"{server.ws_url}/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer k"},
                                  max_size=None, max_queue=None) as ws:
        json.loads(await ws.recv())
        item = {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": LONG_TEXT}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        deltas = 0
        while deltas < 5:  # the answer is streaming
            event = json.loads(await ws.recv())
            deltas += event["type"] == "response.output_audio.delta"
        if abort:
            ws.transport.abort()


async def _until_all_closed(server: ServerHandle, log: SessionLog, baseline: int) -> None:
    deadline = time.monotonic() + 30
    while log.closed < log.opened or await _sessions(server) != baseline:
        assert time.monotonic() < deadline, (
            f"sessions left behind: {log.opened} opened, {log.closed} closed, "
            f"gauge {await _sessions(server)} (was {baseline})")
        await asyncio.sleep(0.05)  # polling a server condition with a deadline


@pytest.mark.parametrize("abort", [True, False], ids=["abort", "close"])
async def test_clients_vanishing_mid_answer_leave_no_session_behind(
    session_log: SessionLog, abort: bool
) -> None:
    settings = Settings(api_keys=("k",), pipeline="builtin")
    with running_server(settings, profiles=lambda s: {"default": builtin_pipeline()},
                        vad_factory=lambda: None) as server:
        baseline = await _sessions(server)
        for _ in range(CLIENTS):  # warm-up: first-use allocations and arenas are not leaks
            await _vanish_mid_answer(server, abort=abort)
        await _until_all_closed(server, session_log, baseline)
        rss_before = _rss_mb()
        for _ in range(CLIENTS):
            await _vanish_mid_answer(server, abort=abort)
        await _until_all_closed(server, session_log, baseline)
        grown = _rss_mb() - rss_before
        assert session_log.opened == 2 * CLIENTS
        gc.collect()
        assert _live(SessionRunner) == 0
        assert grown < RSS_ALLOWANCE_MB, f"RSS grew {grown:.1f} MB for {CLIENTS} aborted sessions"

"""Refusals and protocol violations end cleanly, without tracebacks (issue 17, defects 6, 7)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtgate.server.settings import Settings
from rtgate.testing.server import ServerHandle, running_server
from rtgate.testing.validate import validate_server_event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=("sk-test",)), vad_factory=lambda: None) as handle:
        yield handle


async def test_a_missing_key_closes_3000_with_a_reason_that_names_the_error(
    server: ServerHandle,
) -> None:
    """The cloud's missing-key error has no code; the reason is its type, never '.None'."""
    async with asyncio.timeout(10), connect(
        f"{server.ws_url}/v1/realtime?model=gpt-realtime", proxy=None
    ) as ws:
        event = json.loads(await ws.recv())
        validate_server_event(event)
        assert event["error"]["code"] is None
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 3000
    assert ws.close_reason == "invalid_request_error"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "queued"])
async def test_invalid_utf8_closes_1007_without_a_traceback(
    server: ServerHandle, caplog: pytest.LogCaptureFixture, direct: bool
) -> None:
    """Bytes that are not UTF-8 in a text frame: close 1007, one log line, no traceback —
    whether the session takes the message directly or it waits in the queue."""
    async with asyncio.timeout(10), connect(
        f"{server.ws_url}/v1/realtime?model=gpt-realtime", proxy=None,
        additional_headers={"Authorization": "Bearer sk-test"},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        with caplog.at_level(logging.INFO):
            frames = [b"\xff\xfe not utf-8"]
            if not direct:  # a burst: the bad frame queues behind the first
                frames.insert(0, b'{"type":"input_audio_buffer.clear"}')
            for frame in frames:
                await ws.send(frame, text=True)
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
    assert ws.close_code == 1007
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []

"""A server drain ends a relayed session the same way on both data paths (relay/policy.py):
the drain's ``error`` and close 1012 to the client, close 1001 (Going Away) to the upstream.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.frames import Opcode

from rtgate.relay.session import ClientGone, RelaySession
from rtgate.relay.upstream import RelayLimits
from rtgate.relay.wire import parse_close
from rtgate.server.config import UpstreamConfig
from rtgate.server.drain import shutting_down
from rtgate.testing.validate import validate_server_event

from .conftest import KEY_ENV, PROMPT_S, UPSTREAM_KEY, Relay
from .test_splice_unit import Pair, server_bytes


class QueueClient:
    """A :class:`~rtgate.relay.session.ClientSocket` that records what the relay sends it
    and sends nothing until it is closed."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.got_frame = asyncio.Event()
        self.closed: tuple[int, str] | None = None
        self._gone = asyncio.Event()

    async def receive(self) -> str | bytes | None:
        await self._gone.wait()
        return None

    async def send_text(self, text: str) -> None:
        await self._record(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._record(data)

    async def _record(self, frame: str | bytes) -> None:
        if self.closed is not None:
            raise ClientGone
        self.sent.append(frame)
        self.got_frame.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._gone.set()


async def test_parsed_path_drain_sends_error_1012_and_going_away_upstream(relay: Relay) -> None:
    """Parsed path: session.created passes, then the drain: error server_shutting_down
    (valid against the SDK's models), close 1012 to the client, 1001 to the upstream."""
    faults = relay.faults
    faults.watch_closed.clear()
    client = QueueClient()
    upstream = UpstreamConfig("faults", "openai", f"http://127.0.0.1:{faults.port}/v1", KEY_ENV)
    session = RelaySession(upstream, "fault-watch", client, RelayLimits(close_timeout_s=1.0),
                           environ={KEY_ENV: UPSTREAM_KEY})
    run = asyncio.create_task(session.run())
    await asyncio.wait_for(client.got_frame.wait(), PROMPT_S)
    assert json.loads(client.sent[0])["type"] == "session.created"
    session.shut_down(shutting_down())
    await asyncio.wait_for(run, PROMPT_S)
    error = json.loads(client.sent[-1])
    validate_server_event(error)
    assert error["error"]["code"] == "server_shutting_down"
    assert client.closed == (1012, "server_error.server_shutting_down")
    assert await asyncio.to_thread(faults.watch_closed.wait, PROMPT_S)
    assert faults.watch_closes[-1] == 1001


@pytest.mark.parametrize("answered", [False, True])
async def test_spliced_path_drain_sends_error_1012_and_going_away_upstream(answered: bool) -> None:
    """Spliced path: the same ending at a frame boundary, whatever the deadline's state."""
    pair = Pair().start()
    if answered:
        pair.relay.upstream_sink.data_received(server_bytes((Opcode.TEXT, b'{"type":"session.created"}')))
    pair.relay.shut_down(shutting_down())
    frames = pair.client.frames(masked=False)
    assert frames[-2].opcode is Opcode.TEXT and frames[-1].opcode is Opcode.CLOSE
    error = json.loads(frames[-2].data)
    validate_server_event(error)
    assert error["error"]["code"] == "server_shutting_down"
    assert parse_close(frames[-1].data) == (1012, "server_error.server_shutting_down")
    assert [parse_close(f.data) for f in pair.upstream.frames(masked=True)] == [(1001, "going away")]
    pair.client.close()
    pair.upstream.close()
    ending = await pair.ending()
    assert ending.close_code == 1012 and ending.upstream_code == 1001

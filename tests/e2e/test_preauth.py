"""Connections that have not authenticated yet have deadlines and a cap (issue 17, defect 2).

Idle connections, half-sent headers and slow bodies used to stay open for ever, and 250 of
them used up a 256-descriptor process. Each test holds a raw socket in one pre-request
stage and waits for the server to end it: the wait is bounded, never a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from rtgate.server.settings import Settings
from rtgate.testing.server import ServerHandle, running_server

pytestmark = pytest.mark.e2e

DEADLINE_S = 0.5
SLACK_S = 5.0
"""Upper bound on how late the server may close on a loaded 2-core machine."""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    settings = Settings(api_keys=("k",), http_header_timeout_s=DEADLINE_S,
                        http_body_timeout_s=DEADLINE_S, max_unauthenticated_connections=4)
    with running_server(settings, vad_factory=lambda: None) as handle:
        yield handle


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


async def _open(server: ServerHandle, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def _until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), DEADLINE_S + SLACK_S)
    return data, time.monotonic() - started


async def test_an_idle_connection_is_closed_at_the_header_deadline(server: ServerHandle) -> None:
    reader, writer = await _open(server)
    data, _ = await _until_closed(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_half_sent_headers_are_closed_at_the_header_deadline(server: ServerHandle) -> None:
    """Bytes that keep arriving do not extend the deadline: it runs from the connection."""
    reader, writer = await _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    writer.write(b"X-Slow: 1\r\n")
    data, _ = await _until_closed(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_slow_body_is_closed_at_the_body_deadline_without_a_traceback(
    server: ServerHandle, errors: Errors
) -> None:
    """The app reading the body sees the client gone; nothing is logged as an error."""
    head = (b"POST /v1/realtime/client_secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    reader, writer = await _open(server, head)
    data, _ = await _until_closed(reader)
    assert data.startswith(b"HTTP/1.1 408 ")
    writer.close()
    assert errors.records == []


async def test_a_kept_alive_connection_gets_the_deadline_for_its_next_request(
    server: ServerHandle,
) -> None:
    reader, writer = await _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), SLACK_S)
    assert status.startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next request, half sent
    data, _ = await _until_closed(reader)
    assert b"HTTP/1.1 408 " in data
    writer.close()


async def test_beyond_the_cap_new_connections_get_503_at_once(server: ServerHandle) -> None:
    """Four connections hold the pre-authentication stage; the fifth is refused."""
    held = [await _open(server) for _ in range(4)]
    reader, writer = await _open(server)
    data = await asyncio.wait_for(reader.read(), DEADLINE_S)  # before any deadline passes
    assert data.startswith(b"HTTP/1.1 503 ")
    writer.close()
    for held_reader, held_writer in held:
        await _until_closed(held_reader)
        held_writer.close()
    # Once they are gone the slots are free again: a whole request is served.
    reader, writer = await _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), SLACK_S)).startswith(b"HTTP/1.1 200 ")
    writer.close()

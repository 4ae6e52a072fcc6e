"""Pre-authentication limits that need no server (issue 17, defect 2): the WebSocket
handshake deadline and the report of ``accept`` running out of descriptors."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from rtgate.server.preauth import ACCEPT_ERROR, auto_unauthenticated_cap, install_accept_error_filter
from rtgate.server.settings import Settings
from rtgate.server.ws_protocol import uvicorn_ws_options


class Transport:
    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


async def test_an_upgrade_the_app_never_answers_is_closed_at_the_handshake_deadline() -> None:
    options = uvicorn_ws_options(Settings(ws_handshake_timeout_s=0.05))
    config = uvicorn.Config(_app, **options)
    config.load()
    protocol = options["ws"](config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)  # the upgrade request is never answered
    async with asyncio.timeout(5):
        await transport.closed.wait()
    assert (await protocol.receive())["type"] == "websocket.disconnect"


async def test_accept_out_of_descriptors_is_reported_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asyncio reports EMFILE once per pending connection and retry: one line, no traceback."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    others: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: others.append(context))
    try:
        install_accept_error_filter(loop, interval_s=3600)
        error = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.WARNING, logger="rtgate.preauth"):
            for _ in range(2048):
                loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": error})
            loop.call_exception_handler({"message": "something else"})
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
        assert "Too many open files" in caplog.records[0].getMessage()
        assert others == [{"message": "something else"}]  # passed on unchanged
    finally:
        loop.set_exception_handler(previous)


def test_the_automatic_cap_is_a_quarter_of_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = auto_unauthenticated_cap()
    assert 16 <= cap <= 1024
    if soft != resource.RLIM_INFINITY and 64 <= soft <= 4096:
        assert cap == soft // 4

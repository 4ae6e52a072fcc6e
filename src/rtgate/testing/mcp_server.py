"""Real MCP servers on 127.0.0.1 for tests, built with the official ``mcp`` SDK.

:func:`running_mcp_servers` serves one set of tools three ways, each on its own port:
streamable HTTP (``plain``), streamable HTTP behind a bearer token (``auth``), and the
older SSE transport only (``sse``). The tools answer, fail, hang and return too much:

- ``add(a, b)`` — the sum (annotated read-only);
- ``shout(text)`` — the text in capitals;
- ``fail(text)`` — raises;
- ``slow(text)`` — waits until :attr:`McpServers.release` is set (or for ever);
- ``huge(text)`` — 2,000,000 characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from starlette.responses import JSONResponse

HUGE_CHARS = 2_000_000


@dataclass
class McpServers:
    plain: str
    """Streamable HTTP endpoint URL."""
    auth: str
    """Streamable HTTP endpoint that answers 401 without ``Authorization: Bearer <token>``."""
    sse: str
    """SSE endpoint URL (the server speaks only SSE)."""
    token: str
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    """Request headers of every HTTP request to the ``auth`` server."""
    slow_started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    calls: list[str] = field(default_factory=list)
    """Names of the tools called, in order."""


def build_server(state: McpServers) -> MCPServer:
    server = MCPServer("rtgate-test")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        state.calls.append("add")
        return a + b

    @server.tool()
    def shout(text: str) -> str:
        """Repeat the text in capital letters."""
        state.calls.append("shout")
        return text.upper()

    @server.tool()
    def fail(text: str) -> str:
        """A tool that always fails."""
        state.calls.append("fail")
        raise ValueError("the tool failed on purpose")

    @server.tool()
    async def slow(text: str) -> str:
        """A tool that takes a long time."""
        state.calls.append("slow")
        state.slow_started.set()
        while not state.release.is_set():  # noqa: ASYNC110 - a thread sets it
            await asyncio.sleep(0.02)
        return "finally"

    @server.tool()
    def huge(text: str) -> str:
        """A tool with a very long answer."""
        state.calls.append("huge")
        return "x" * HUGE_CHARS

    return server


def _require_bearer(app: Any, state: McpServers) -> Any:
    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            state.seen_headers.append(headers)
            if headers.get("authorization") != f"Bearer {state.token}":
                await JSONResponse({"error": "invalid_token"}, status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running_mcp_servers(token: str = "mcp-test-token") -> Iterator[McpServers]:  # noqa: S107 - a test token
    """Serve the test tools on loopback (a thread with its own event loop) until exit."""
    socks = [_bound_socket() for _ in range(3)]
    ports = [s.getsockname()[1] for s in socks]
    state = McpServers(
        plain=f"http://127.0.0.1:{ports[0]}/mcp",
        auth=f"http://127.0.0.1:{ports[1]}/mcp",
        sse=f"http://127.0.0.1:{ports[2]}/sse",
        token=token,
    )
    apps = [
        build_server(state).streamable_http_app(),
        _require_bearer(build_server(state).streamable_http_app(), state),
        build_server(state).sse_app(),
    ]
    servers = [uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")) for app in apps]
    started = threading.Event()

    def run() -> None:
        async def main() -> None:
            pairs = zip(servers, socks, strict=True)
            tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in pairs]
            # uvicorn has no start-up callback; poll its flag (a start-up wait, not ordering).
            while not all(s.started for s in servers) and not any(t.done() for t in tasks):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            started.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())

    thread = threading.Thread(target=run, name="mcp-test-servers", daemon=True)
    thread.start()
    if not started.wait(30) or not all(s.started for s in servers):
        raise RuntimeError("MCP test servers did not start")
    try:
        yield state
    finally:
        state.release.set()
        for server in servers:
            server.should_exit = True
        thread.join(15)
        for sock in socks:
            sock.close()

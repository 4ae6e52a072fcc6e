"""Calls to remote MCP servers with the official ``mcp`` SDK: the I/O edge of MCP tools.

Each operation (list the tools, call one) opens its own connection: streamable HTTP
first, then the older SSE transport when the server answers the streamable HTTP POST with
404, 405 or 400 (a server that only speaks SSE). The whole operation, connection included,
runs under one deadline. Every failure becomes :class:`McpFailure` carrying the error
object the GA protocol puts on an ``mcp_call`` item (``http_error``, ``protocol_error``,
``tool_execution_error``); header values and the authorization token never appear in a
message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT

from .limits import McpLimits

# httpx2 logs every request's full URL at INFO; an MCP server_url may carry a token in its
# query string, and rtgate's log redaction cannot know every parameter name.
logging.getLogger("httpx2").setLevel(logging.WARNING)

SSE_FALLBACK_STATUSES = frozenset({400, 404, 405})
"""Answers to the streamable HTTP POST that mean "try the SSE transport"."""


@dataclass(frozen=True, slots=True)
class McpServer:
    """Where a session's MCP tool lives: its URL and what to send with each request."""

    label: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    authorization: str | None = None

    @classmethod
    def from_tool(cls, tool: dict[str, Any]) -> McpServer:
        """From a session's ``{"type": "mcp", ...}`` tool (``server_url`` set)."""
        return cls(
            label=str(tool["server_label"]),
            url=str(tool["server_url"]),
            headers=tuple(sorted((tool.get("headers") or {}).items())),
            authorization=tool.get("authorization"),
        )

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.authorization:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers

    def __repr__(self) -> str:  # secrets stay out of reprs, hence out of logs
        return f"McpServer(label={self.label!r}, url=<{len(self.url)} chars>)"


class McpFailure(Exception):
    """An MCP operation failed; :attr:`error` is the item's ``error`` object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error

    @property
    def message(self) -> str:
        return str(self.error["message"])


def http_error(code: int, message: str) -> McpFailure:
    return McpFailure({"type": "http_error", "code": code, "message": message})


def protocol_error(code: int, message: str) -> McpFailure:
    return McpFailure({"type": "protocol_error", "code": code, "message": message})


def tool_error(message: str) -> McpFailure:
    return McpFailure({"type": "tool_execution_error", "message": message})


class _StatusLog:
    """Remembers the first HTTP error status the server answered with (an httpx2 hook):
    the SDK turns a 401 into a generic JSON-RPC error, the status says what happened."""

    def __init__(self, *methods: str) -> None:
        self.methods = methods
        """Requests that count: a streamable HTTP server may refuse the optional GET stream
        (405) or the closing DELETE, which says nothing about a failure."""
        self.status: int | None = None
        self.reason = ""

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code >= 400 and self.status is None and response.request.method in self.methods:
            self.status = response.status_code
            self.reason = response.reason_phrase


@contextlib.asynccontextmanager
async def _connect(server: McpServer, timeout_s: float) -> AsyncIterator[Client]:
    status = _StatusLog("POST")
    headers = server.request_headers()
    timeout = httpx2.Timeout(timeout_s)
    connected = False
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=timeout, event_hooks={"response": [status]}) as http,
            Client(streamable_http_client(server.url, http_client=http)) as client,
        ):
            connected = True
            yield client
            return
    except Exception as exc:
        if connected or status.status not in SSE_FALLBACK_STATUSES:
            raise _failure(exc, status, server) from None
    # The streamable HTTP endpoint is not there: the server may speak only SSE.
    sse_status = _StatusLog("GET", "POST")

    def sse_http(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                 auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth,
                                  event_hooks={"response": [sse_status]})

    try:
        async with Client(sse_client(server.url, headers=headers, timeout=timeout_s,
                                     sse_read_timeout=timeout_s, httpx_client_factory=sse_http)) as client:
            yield client
    except Exception as exc:
        raise _failure(exc, sse_status if sse_status.status else status, server) from None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _failure(exc: Exception, status: _StatusLog, server: McpServer) -> McpFailure:
    """The protocol's error object for what went wrong talking to ``server``."""
    if isinstance(exc, McpFailure):
        return exc
    where = f"MCP server '{server.label}'"
    if status.status is not None:
        return http_error(status.status, f"{where} answered HTTP {status.status} {status.reason}".strip())
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, McpFailure):
            return leaf
        if isinstance(leaf, MCPError):
            return protocol_error(leaf.code, f"{where}: {leaf.message}")
    for leaf in leaves:
        if isinstance(leaf, httpx2.TransportError):
            return http_error(502, f"{where} is unreachable: {type(leaf).__name__}")
    return protocol_error(-32603, f"{where} failed: {type(leaves[0]).__name__}")


async def _bounded(server: McpServer, timeout_s: float, what: str, op: Any) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            async with _connect(server, timeout_s) as client:
                return await op(client)
    except TimeoutError:
        raise protocol_error(
            REQUEST_TIMEOUT, f"MCP server '{server.label}' did not answer {what} within {timeout_s:g} s"
        ) from None
    except McpFailure:
        raise
    except MCPError as exc:
        raise protocol_error(exc.code, f"MCP server '{server.label}': {exc.message}") from None


async def list_tools(server: McpServer, limits: McpLimits) -> list[dict[str, Any]]:
    """The server's tools as ``mcp_list_tools`` items carry them: ``{name, input_schema,
    description?, annotations?}`` (every page, at most ``limits.max_tools``)."""

    async def op(client: Client) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(tools) < limits.max_tools:
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                shown: dict[str, Any] = {"name": tool.name, "input_schema": tool.input_schema}
                if tool.description:
                    shown["description"] = tool.description
                if tool.annotations is not None:
                    shown["annotations"] = tool.annotations.model_dump(
                        mode="json", by_alias=True, exclude_none=True)
                tools.append(shown)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools[: limits.max_tools]

    result: list[dict[str, Any]] = await _bounded(server, limits.list_timeout_s, "tools/list", op)
    return result


async def call_tool(server: McpServer, name: str, arguments: str, limits: McpLimits) -> str:
    """Call ``name`` with ``arguments`` (a JSON object as text); the output as text.

    Raises :class:`McpFailure`: ``protocol_error`` for arguments that are not a JSON
    object, a JSON-RPC error or a timeout; ``http_error`` for an HTTP refusal or an
    unreachable server; ``tool_execution_error`` when the tool reports an error or its
    output is over ``limits.max_output_bytes``.
    """
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise protocol_error(-32602, f"The arguments of {name} are not a JSON object.")

    async def op(client: Client) -> str:
        result = await client.call_tool(name, parsed)
        text = _text_of(result.content)
        if result.is_error:
            raise tool_error(text or f"{name} failed")
        return text

    output: str = await _bounded(server, limits.call_timeout_s, "tools/call", op)
    size = len(output.encode())
    if size > limits.max_output_bytes:
        raise tool_error(
            f"The output of {name} is {size} bytes, over the limit of {limits.max_output_bytes} "
            "bytes (setting mcp_max_output_bytes).")
    return output


def _text_of(content: Any) -> str:
    pieces = []
    for part in content or ():
        kind = getattr(part, "type", None)
        if kind == "text":
            pieces.append(part.text)
        elif kind in ("image", "audio"):
            pieces.append(f"[{kind} {getattr(part, 'mime_type', '')}]".replace(" ]", "]"))
        elif kind == "resource_link":
            pieces.append(str(getattr(part, "uri", "")))
        elif kind == "resource":
            pieces.append(getattr(part.resource, "text", None) or str(getattr(part.resource, "uri", "")))
    return "\n".join(pieces)

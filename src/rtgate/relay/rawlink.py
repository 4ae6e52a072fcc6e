"""Opening the upstream GA WebSocket as a raw byte stream, for a spliced relay (.splice).

The handshake is the one :func:`rtgate.relay.upstream.open_upstream` makes — same URL,
same credential header, no extension offered (so frames can pass verbatim), the same
failure endings — but on a plain asyncio connection: the upgrade request comes from
websockets' sans-I/O :class:`~websockets.client.ClientProtocol`, the response is read up to
the end of its headers, and *only the header bytes* are given to that parser, which
checks ``Sec-WebSocket-Accept`` and refuses any extension. Every byte after the headers is
the beginning of the frame stream and is kept for the session (:meth:`RawLink.attach`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import cast

from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.http11 import Response
from websockets.uri import parse_uri

from ..asgi.hooks import RawSink
from .config import UpstreamConfig
from .upstream import RelayLimits, connect_failure, upstream_headers, upstream_url

MAX_RESPONSE_HEAD_BYTES = 64 * 1024
"""Largest upgrade response head accepted from an upstream."""
EARLY_BUFFER_BYTES = 256 * 1024
"""Bytes held from the upstream before the session attaches; reading pauses beyond."""


class RawLink(asyncio.Protocol):
    """The upstream connection: collects the response head, then hands bytes to a sink.

    Until :meth:`attach`, bytes after the head are held (reading pauses past
    :data:`EARLY_BUFFER_BYTES`) and a lost connection is remembered; ``attach`` delivers
    both, in order.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._head_future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._early: list[bytes] = []
        self._early_bytes = 0
        self._paused = False
        self._sink: RawSink | None = None
        self._lost: tuple[Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.data_received(data)
            return
        if not self._head_future.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_RESPONSE_HEAD_BYTES:
                    self._head_future.set_exception(InvalidHandshake("response head too large"))
                return
            data = bytes(self._head[end + 4 :])
            self._head_future.set_result(bytes(self._head[: end + 4]))
            self._head = bytearray()
            if not data:
                return
        self._early.append(data)
        self._early_bytes += len(data)
        if self._early_bytes > EARLY_BUFFER_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._head_future.done():
            self._head_future.set_exception(exc or ConnectionResetError("closed during the upgrade"))
        if self._sink is not None:
            self._sink.connection_lost(exc)
        else:
            self._lost = (exc,)

    def pause_writing(self) -> None:
        if self._sink is not None:
            self._sink.pause_writing()

    def resume_writing(self) -> None:
        if self._sink is not None:
            self._sink.resume_writing()

    async def response_head(self) -> bytes:
        """The response's status line and headers, through the blank line."""
        return await self._head_future

    def attach(self, sink: RawSink) -> bytes:
        """Hand the connection to ``sink``; returns the bytes already received after the
        head, which ``sink`` must process first. A loss seen before reaches ``sink`` on the
        next loop turn."""
        self._sink = sink
        early = b"".join(self._early)
        self._early, self._early_bytes = [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self._lost is not None:
            asyncio.get_running_loop().call_soon(sink.connection_lost, self._lost[0])
        return early


def _status(head: bytes) -> int:
    try:
        return int(head.split(b"\r\n", 1)[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise InvalidHandshake("malformed HTTP status line") from None


async def open_raw_upstream(
    upstream: UpstreamConfig,
    model: str,
    limits: RelayLimits,
    *,
    intent: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[asyncio.Transport, RawLink]:
    """Connect to ``upstream`` and complete the upgrade; ``(transport, link)`` positioned at
    the first frame byte. Raises :class:`~rtgate.relay.upstream.UpstreamUnavailable` with
    a client-safe reason, as :func:`~rtgate.relay.upstream.open_upstream` does."""
    headers = upstream_headers(upstream, environ)
    url = upstream_url(upstream, model, intent=intent)
    transport: asyncio.Transport | None = None
    try:
        uri = parse_uri(url)
        protocol = ClientProtocol(uri, extensions=None, max_size=limits.max_frame_bytes)
        request = protocol.connect()
        request.headers.update(headers)
        request.headers["User-Agent"] = "rtgate-relay"
        protocol.send_request(request)
        context = ssl.create_default_context() if uri.secure else None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(limits.connect_timeout_s):
            transport, link = await loop.create_connection(
                RawLink, uri.host, uri.port, ssl=context,
                server_hostname=uri.host if context is not None else None)
            transport.write(b"".join(protocol.data_to_send()))
            head = await link.response_head()
        status = _status(head)
        if status != 101:
            raise InvalidStatus(Response(status, "", Headers()))
        protocol.receive_data(head)  # the head only: the frames after it are the session's
        protocol.events_received()
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
    except Exception as exc:
        if transport is not None:
            transport.abort()
        raise connect_failure(upstream, url, exc, limits) from None
    return transport, link

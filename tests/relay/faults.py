"""A fault-injecting GA upstream on 127.0.0.1 for relay tests.

The client's ``model`` (which the relay forwards when the upstream config names none)
selects the behaviour; every connection's request headers are recorded.

* ``fault-ok``: ``session.created``, then one ``error`` reply per client frame whose message is
  the frame's type and the SHA-256 of its bytes as received.
* ``fault-mirror``: ``session.created``, then every client frame back as it came (text or
  binary).
* ``fault-close``: accepts the upgrade and closes at once with 1011.
* ``fault-reset``: ``session.created``, then on the first client event the TCP connection
  is aborted (no close frame).
* ``fault-stall``: accepts the upgrade and never sends anything.
* ``fault-stall-later``: ``session.created``, then silence whatever the client sends.
* ``fault-created-late``: waits for the client's first event, answers ``session.created``
  only, then silence (the event is never answered).
* ``fault-error4000``: the cloud's refusal — ``error`` ``beta_api_shape_disabled``, close 4000.
* ``fault-error3000``: ``error`` ``invalid_api_key``, close 3000.
* ``fault-http401``: the upgrade is refused with HTTP 401.
* ``fault-watch``: ``session.created``, then records the close code the relay sends.
* ``fault-deaf``: ``session.created``, then stops reading its socket: no pongs, no events.
* ``fault-flood``: ``session.created``, then ``response.output_audio.delta`` events of 48 KiB
  as fast as the relay takes them, until the connection closes; records the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


def _created() -> str:
    return json.dumps({"type": "session.created", "event_id": "event_fault_1",
                       "session": {"type": "realtime", "object": "realtime.session", "id": "sess_fault"}})


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "event_id": "event_fault_2", "error": {
        "type": "invalid_request_error", "code": code, "message": message, "param": None,
        "event_id": None}})


def _audio_delta(size: int) -> str:
    return json.dumps({"type": "response.output_audio.delta", "event_id": "event_fault_3",
                       "response_id": "resp_fault", "item_id": "item_fault", "output_index": 0,
                       "content_index": 0, "delta": "A" * size})


@dataclass
class FaultUpstream:
    port: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    watch_closes: list[int | None] = field(default_factory=list)
    watch_closed: threading.Event = field(default_factory=threading.Event)
    flood_closes: list[int | None] = field(default_factory=list)
    flood_closed: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        self.paths.append(request.path)
        if "fault-http401" in request.path:
            return Response(401, "Unauthorized", Headers([("Content-Length", "0")]), b"")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        model = parse_qs(urlsplit(ws.request.path).query).get("model", [""])[0]  # type: ignore[union-attr]
        if model == "fault-close":
            await ws.close(1011, "upstream broke")
            return
        if model == "fault-stall":
            await ws.wait_closed()
            return
        if model == "fault-error4000":
            await ws.send(_error("beta_api_shape_disabled", "The beta API shape is disabled."))
            await ws.close(4000, "invalid_request_error.beta_api_shape_disabled")
            return
        if model == "fault-error3000":
            await ws.send(_error("invalid_api_key", "Incorrect API key provided."))
            await ws.close(3000, "invalid_request_error.invalid_api_key")
            return
        if model == "fault-created-late":
            await ws.recv()  # the client's event is upstream before session.created
            await ws.send(_created())
            await ws.wait_closed()
            return
        await ws.send(_created())
        if model == "fault-reset":
            await ws.recv()
            ws.transport.abort()
            return
        if model == "fault-deaf":
            ws.transport.pause_reading()
            await asyncio.sleep(5)  # deaf for longer than the relay's keepalive allows
            ws.transport.abort()
            return
        if model == "fault-stall-later":
            await ws.wait_closed()
            return
        if model == "fault-flood":
            delta = _audio_delta(48 * 1024)
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send(delta)
            await ws.wait_closed()
            self.flood_closes.append(ws.close_code)
            self.flood_closed.set()
            return
        if model == "fault-watch":
            await ws.wait_closed()
            self.watch_closes.append(ws.close_code)
            self.watch_closed.set()
            return
        if model == "fault-mirror":  # every frame back as it came, text or binary
            async for message in ws:
                await ws.send(message)
            return
        async for message in ws:
            raw = message.encode() if isinstance(message, str) else message
            kind = json.loads(message).get("type") if isinstance(message, str) else "binary"
            await ws.send(_error("echo", f"{kind} {hashlib.sha256(raw).hexdigest()}"))


@contextmanager
def fault_upstream() -> Iterator[FaultUpstream]:
    """Run a :class:`FaultUpstream` in its own thread and loop on 127.0.0.1."""
    fault = FaultUpstream()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Future[Any]] = []

    async def main() -> None:
        async with serve(fault.handler, "127.0.0.1", 0, process_request=fault._process_request,
                         compression=None, close_timeout=1) as server:
            fault.port = next(iter(server.sockets)).getsockname()[1]
            future: asyncio.Future[Any] = loop.create_future()
            stop.append(future)
            ready.set()
            await future

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fault
    finally:
        loop.call_soon_threadsafe(stop[0].set_result, None)
        thread.join(10)


@contextmanager
def silent_tcp() -> Iterator[int]:
    """A TCP listener that accepts and never answers the upgrade; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port

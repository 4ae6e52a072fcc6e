"""A webhook receiver on loopback, as an app would run it: every delivery is verified with
the official SDK (``client.webhooks.unwrap``) and the call accepted or rejected with it."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(eq=False)
class Receiver:
    """The app's webhook endpoint: verifies each delivery with ``client.webhooks.unwrap``
    and, per ``mode``, accepts (with ``session``), rejects, or does nothing. ``fail``
    deliveries are answered 503 first (to exercise retries)."""

    secret: str
    api_key: str
    mode: str = "accept"
    session: dict[str, Any] = field(default_factory=dict)
    reject_status: int = 486
    fail: int = 0
    base_url: str = ""
    deliveries: queue.Queue[tuple[Any, dict[str, str]]] = field(default_factory=queue.Queue)
    refused: list[str] = field(default_factory=list)
    attempts: int = 0
    ids: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    control_errors: list[str] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        self.attempts += 1
        self.ids.append(request.headers.get("webhook-id", ""))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow receiver (what is tested, not ordering)
        body = await request.body()
        if self.fail > 0:
            self.fail -= 1
            return Response(status_code=503)
        client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key)
        try:
            event = client.webhooks.unwrap(body, request.headers, secret=self.secret)
        except Exception as exc:
            self.refused.append(type(exc).__name__)
            return Response(status_code=400)
        self.deliveries.put((event, dict(request.headers)))
        if event.type != "realtime.call.incoming":
            return Response(status_code=200)
        try:
            call_id = event.data.call_id
            if self.mode == "accept":
                await client.realtime.calls.accept(call_id, type="realtime", **self.session)
            elif self.mode == "reject":
                await client.realtime.calls.reject(call_id, status_code=self.reject_status)
        except Exception as exc:
            self.control_errors.append(repr(exc))
        finally:
            await client.close()
        return Response(status_code=200)

    def next_delivery(self, within: float = 10.0) -> tuple[Any, dict[str, str]]:
        return self.deliveries.get(timeout=within)


@contextlib.contextmanager
def running_receiver(receiver: Receiver) -> Iterator[str]:
    """The receiver on 127.0.0.1:<ephemeral> in its own thread; yields its URL."""
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "webhook receiver did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        thread.join(10)

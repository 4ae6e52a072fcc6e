"""SIP calls on loopback: a real rtgate with its SIP endpoint, a webhook receiver that
verifies signatures with the official SDK and accepts or rejects with it, and a SIP phone
(rtgate.testing.sip_peer: aiosipua's UAC + aiortp RTP)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.sip_peer import free_udp_port
from rtgate.testing.validate import validate_server_event

SECRET = "whsec_" + base64.b64encode(b"rtgate-sip-tests-webhook-secret!").decode()
KEY = "sk-test"


@dataclass
class Receiver:
    """The app's webhook endpoint: verifies each delivery with ``client.webhooks.unwrap``
    and, per ``mode``, accepts (with ``session``), rejects, or does nothing. ``fail``
    deliveries are answered 503 first (to exercise retries)."""

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
        client = AsyncOpenAI(base_url=self.base_url, api_key=KEY)
        try:
            event = client.webhooks.unwrap(body, request.headers, secret=SECRET)
        except Exception as exc:
            self.refused.append(type(exc).__name__)
            return Response(status_code=400)
        self.deliveries.put((event, dict(request.headers)))
        try:
            if self.mode == "accept":
                await client.realtime.calls.accept(event.data.call_id, type="realtime", **self.session)
            elif self.mode == "reject":
                await client.realtime.calls.reject(event.data.call_id, status_code=self.reject_status)
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


@dataclass
class Rig:
    server: ServerHandle
    receiver: Receiver

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.settings.sip_port)

    def client(self) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.server.base_url, api_key=KEY)


def sip_settings(webhook_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {"api_keys": (KEY,), "sip_port": free_udp_port(),
                              "webhook_urls": (webhook_url,), "webhook_secret": SECRET,
                              "sip_answer_timeout_s": 3.0, "sip_media_timeout_s": 3.0}
    return Settings(**{**values, **changes})


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    receiver = Receiver()
    with running_receiver(receiver) as url:
        settings = sip_settings(url)
        with running_server(
            settings,
            profiles=fake_profiles(FakeLLM("It is noon."), FakeTTS(ms_per_word=300),
                                   FakeSTT("what time is it")),
            vad_factory=FakeVAD,
        ) as handle:
            receiver.base_url = handle.base_url
            yield Rig(handle, receiver)


@pytest.fixture
def receiver(rig: Rig) -> Iterator[Receiver]:
    """The rig's receiver, reset to accepting after each test."""
    yield rig.receiver
    rig.receiver.mode, rig.receiver.session, rig.receiver.fail = "accept", {}, 0
    rig.receiver.delay_s = 0.0
    rig.receiver.ids.clear()
    while not rig.receiver.deliveries.empty():
        rig.receiver.deliveries.get_nowait()


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll a condition across the network/threads, with a deadline."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def delivery(receiver: Receiver, within: float = 10.0) -> tuple[Any, dict[str, str]]:
    return await asyncio.to_thread(receiver.next_delivery, within)


class Events:
    """Reads raw frames from an SDK sideband connection, validating each strictly."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def next(self, within: float = 20.0) -> dict[str, Any]:
        event = json.loads(await asyncio.wait_for(self.conn.recv_bytes(), within))
        validate_server_event(event)
        self.seen.append(event)
        return event  # type: ignore[no-any-return]

    async def until(self, type_: str, within: float = 20.0) -> list[dict[str, Any]]:
        out = []
        while True:
            out.append(await self.next(within))
            if out[-1]["type"] == type_:
                return out

"""SIP calls on loopback: a real rtgate with its SIP endpoint, a webhook receiver that
verifies signatures with the official SDK and accepts or rejects with it, and a SIP phone
(rtgate.testing.sip_peer: aiosipua's UAC + aiortp RTP)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from openai import AsyncOpenAI

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.sip_peer import free_sip_port
from rtgate.testing.validate import validate_server_event
from rtgate.testing.webhook_receiver import Receiver, running_receiver

SECRET = "whsec_" + base64.b64encode(b"rtgate-sip-tests-webhook-secret!").decode()
KEY = "sk-test"


@dataclass
class Rig:
    server: ServerHandle
    receiver: Receiver

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.settings.sip.port)

    def client(self) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.server.base_url, api_key=KEY)


def sip_settings(webhook_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {"api_keys": (KEY,), "sip_port": free_sip_port(),
                              "webhook_urls": (webhook_url,), "webhook_secret": SECRET,
                              "sip_answer_timeout_s": 3.0, "sip_media_timeout_s": 3.0}
    return Settings(**{**values, **changes})


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with running_rig() as rig:
        yield rig


@contextlib.contextmanager
def running_rig(**changes: Any) -> Iterator[Rig]:
    """A webhook receiver and an rtgate with fake engines and ``sip_settings(**changes)``."""
    receiver = Receiver(SECRET, KEY)
    with running_receiver(receiver) as url:
        settings = sip_settings(url, **changes)
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

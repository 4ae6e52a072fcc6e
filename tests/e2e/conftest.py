"""End-to-end fixtures: a real rtgate on 127.0.0.1 and the official openai SDK as client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeTTS
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.validate import validate_server_event

EVENT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=("sk-test",))) as handle:
        yield handle


def client_for(handle: ServerHandle, key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=handle.base_url, api_key=key)


class Events:
    """Reads raw frames from an SDK connection, validates each strictly, keeps them all."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), EVENT_TIMEOUT_S)
        event = json.loads(raw)
        validate_server_event(event)
        self.seen.append(event)
        return event

    async def until(self, type_: str) -> list[dict[str, Any]]:
        """Events up to and including the first of ``type_``."""
        out = []
        while True:
            event = await self.next()
            out.append(event)
            if event["type"] == type_:
                return out

    async def until_any(self, *types_: str) -> list[dict[str, Any]]:
        """Events up to and including the first whose type is one of ``types_``."""
        out = []
        while True:
            event = await self.next()
            out.append(event)
            if event["type"] in types_:
                return out

    async def expect(self, type_: str) -> dict[str, Any]:
        event = await self.next()
        assert event["type"] == type_, f"expected {type_}, got {event}"
        return event


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def assert_error(event: dict[str, Any], code: str | None, *, event_id: str | None = None,
                 param: str | None = None) -> None:
    assert event["type"] == "error", event
    assert event["error"]["code"] == code, event
    if event_id is not None:
        assert event["error"]["event_id"] == event_id, event
    if param is not None:
        assert event["error"]["param"] == param, event


__all__ = ["Events", "FakeLLM", "FakeTTS", "assert_error", "client_for", "fake_profiles", "types"]

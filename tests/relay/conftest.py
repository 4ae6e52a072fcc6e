"""Relay fixtures: a GA upstream rtgate, a fault-injecting upstream, and a gateway rtgate
whose config file routes model names to them (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .faults import FaultUpstream, closed_port, fault_upstream, silent_tcp

CLIENT_KEY = "sk-client-key"
UPSTREAM_KEY = "sk-upstream-key"
AZURE_KEY = "azure-upstream-key"
KEY_ENV = "RTGATE_TEST_RELAY_UPSTREAM_KEY"
AZURE_ENV = "RTGATE_TEST_RELAY_AZURE_KEY"
UNSET_ENV = "RTGATE_TEST_RELAY_UNSET_KEY"
RELAY_LIMITS = {
    "relay_connect_timeout_s": 1.5,
    "relay_answer_deadline_s": 1.5,
    "relay_ping_interval_s": 1.0,
    "relay_ping_timeout_s": 1.0,
    "relay_close_timeout_s": 1.0,
    "send_deadline_s": 1.5,
}
PROMPT_S = 10.0
"""Every fault must reach the client within this many seconds."""

CONFIG = """
[upstreams.rtgate]
kind = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
api_key_env = "{key_env}"

[upstreams.faults]
kind = "openai"
base_url = "http://127.0.0.1:{faults}/v1"
api_key_env = "{key_env}"

[upstreams.azure]
kind = "azure"
base_url = "http://127.0.0.1:{faults}/openai/v1"
api_key_env = "{azure_env}"
model = "fault-ok"

[upstreams.refused]
kind = "openai"
base_url = "http://127.0.0.1:{refused}/v1"
api_key_env = "{key_env}"

[upstreams.silent]
kind = "openai"
base_url = "http://127.0.0.1:{silent}/v1"
api_key_env = "{key_env}"

[upstreams.nokey]
kind = "openai"
base_url = "http://127.0.0.1:{faults}/v1"
api_key_env = "{unset_env}"

[upstreams.direct]
kind = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
api_key_env = "{key_env}"
model = "gpt-realtime"
client_secrets = "upstream"

[upstreams.mintrefused]
kind = "openai"
base_url = "http://127.0.0.1:{refused}/v1"
api_key_env = "{key_env}"
client_secrets = "upstream"

[[routes]]
model = "direct-*"
upstream = "direct"

[[routes]]
model = "mintrefused-*"
upstream = "mintrefused"

[[routes]]
model = "fault-*"
upstream = "faults"

[[routes]]
model = "azure-*"
upstream = "azure"

[[routes]]
model = "refused-*"
upstream = "refused"

[[routes]]
model = "silent-*"
upstream = "silent"

[[routes]]
model = "nokey-*"
upstream = "nokey"

[[routes]]
model = "gpt-realtime*"
upstream = "rtgate"

[[routes]]
model = "gpt-4o-realtime-preview*"
upstream = "rtgate"
"""


@dataclass
class Relay:
    gateway: ServerHandle
    upstream: ServerHandle
    faults: FaultUpstream


@pytest.fixture(scope="package")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    saved = {k: os.environ.get(k) for k in (KEY_ENV, AZURE_ENV, UNSET_ENV)}
    os.environ[KEY_ENV] = UPSTREAM_KEY
    os.environ[AZURE_ENV] = AZURE_KEY
    os.environ.pop(UNSET_ENV, None)
    upstream_profiles = fake_profiles(llm=FakeLLM(), tts=FakeTTS(), stt=FakeSTT("hello from the relay"))
    try:
        with (
            running_server(Settings(api_keys=(UPSTREAM_KEY,)), profiles=upstream_profiles,
                           vad_factory=FakeVAD) as upstream,
            fault_upstream() as faults,
            silent_tcp() as silent,
        ):
            config = Path(tmp_path_factory.mktemp("relay")) / "rtgate.toml"
            config.write_text(CONFIG.format(
                upstream=upstream.port, faults=faults.port, refused=closed_port(), silent=silent,
                key_env=KEY_ENV, azure_env=AZURE_ENV, unset_env=UNSET_ENV))
            settings = Settings(api_keys=(CLIENT_KEY,), config_file=str(config), **RELAY_LIMITS)
            with running_server(settings, profiles=fake_profiles(), vad_factory=FakeVAD) as gateway:
                yield Relay(gateway, upstream, faults)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Outcome:
    events: list[dict[str, Any]]
    close_code: int | None
    close_reason: str
    elapsed_s: float

    def error(self) -> dict[str, Any]:
        errors = [e for e in self.events if e.get("type") == "error"]
        assert errors, f"no error event: {self.events}"
        return errors[-1]["error"]


async def relay_until_closed(
    handle: ServerHandle, model: str, *, send: tuple[str, ...] = (), key: str = CLIENT_KEY,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """Open a raw GA socket to the gateway, send ``send``, read every frame until the close."""
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    async with asyncio.timeout(PROMPT_S + 5):
        async with connect(
            f"{handle.ws_url}/v1/realtime?model={model}",
            additional_headers={"Authorization": f"Bearer {key}", **(headers or {})},
            compression=None, proxy=None,
        ) as ws:
            for frame in send:
                await ws.send(frame)
            try:
                async for message in ws:
                    events.append(json.loads(message))
            except ConnectionClosed:
                pass
            return Outcome(events, ws.close_code, ws.close_reason or "", time.monotonic() - started)

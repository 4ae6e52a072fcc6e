"""Binary frames pass through the relay both ways, on both data paths (issue 17, defect 8).

The spliced path forwarded them; the parsed one (``relay_splice = false``, and every
Preview session) dropped binary frames from the upstream, although docs/relay.md promises
both directions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import CLIENT_KEY, KEY_ENV, PROMPT_S, RELAY_LIMITS, Relay

pytestmark = pytest.mark.e2e

CONFIG = """
[upstreams.faults]
kind = "openai"
base_url = "http://127.0.0.1:{faults}/v1"
api_key_env = "{key_env}"

[[routes]]
model = "fault-*"
upstream = "faults"
"""


@pytest.fixture(params=[True, False], ids=["spliced", "parsed"])
def gateway(request: pytest.FixtureRequest, relay: Relay, tmp_path: Path) -> Iterator[ServerHandle]:
    config = tmp_path / "rtgate.toml"
    config.write_text(CONFIG.format(faults=relay.faults.port, key_env=KEY_ENV))
    settings = Settings(api_keys=(CLIENT_KEY,), config_file=str(config),
                        relay_splice=request.param, **RELAY_LIMITS)
    with running_server(settings, profiles=fake_profiles(), vad_factory=FakeVAD) as handle:
        yield handle


@pytest.mark.parametrize("preview", [False, True], ids=["ga", "preview"])
async def test_binary_frames_reach_the_client_as_sent(gateway: ServerHandle, preview: bool) -> None:
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    if preview:
        headers["OpenAI-Beta"] = "realtime=v1"
    async with asyncio.timeout(PROMPT_S), connect(
        f"{gateway.ws_url}/v1/realtime?model=fault-mirror", additional_headers=headers,
        compression=None, proxy=None,
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        binary = b"\x00binary\xff" * 100
        await ws.send(binary)
        frame = await ws.recv()
        while isinstance(frame, str):  # a Preview client also gets conversation.created
            assert json.loads(frame)["type"] == "conversation.created"
            frame = await ws.recv()
        assert frame == binary

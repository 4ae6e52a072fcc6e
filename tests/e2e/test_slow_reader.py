"""A client that stops reading is closed (1008) and its session released (issue 2 limits)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from rtgate.pipeline.builtin import ToneTTS
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM
from rtgate.testing.server import fake_profiles, running_server

pytestmark = pytest.mark.e2e


async def _sessions(http_url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{http_url}/healthz")).json()["sessions"])


async def test_a_client_that_stops_reading_is_dropped_and_its_session_released() -> None:
    """Outbound queue full or send deadline passed → close 1008; nothing stays behind."""
    settings = Settings(outbound_queue_events=64, send_deadline_s=1.0)
    # Long spoken answers: seconds of tone audio per word, far more than socket buffers.
    profiles = fake_profiles(llm=FakeLLM(" ".join(["word"] * 200)), tts=ToneTTS(ms_per_word=2000))
    with running_server(settings, profiles=profiles) as server:
        url = f"{server.ws_url}/v1/realtime?model=gpt-realtime"
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer k"},
                                      max_size=None, max_queue=1) as ws:
            # Read nothing but the first frame, then ask for a long answer and stop reading.
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "response.create"}))
            deadline = time.monotonic() + 30
            while await _sessions(server.http_url) != 0:
                assert time.monotonic() < deadline, "the session of a stalled client was never released"
                await asyncio.sleep(0.1)  # polling a server condition with a deadline

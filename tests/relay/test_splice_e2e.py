"""The spliced relay end to end with the official ``openai`` SDK: client → gateway rtgate
→ upstream rtgate (or the fault upstream), all on 127.0.0.1.

The GA sessions of the other relay tests are spliced too (``relay_splice`` is on by
default); these tests check that they are, what only the splice does (the client's own
close code reaches the upstream), the faults seen through the SDK, and that the parsed path
still serves Preview clients, local models and ``relay_splice = false``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from rtgate.testing.audio import chunks, noise_pcm
from rtgate.testing.fakes import FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import CLIENT_KEY, PROMPT_S, Relay
from .test_relay_sdk import Events

pytestmark = pytest.mark.e2e


def sdk(handle: ServerHandle) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=handle.base_url, api_key=CLIENT_KEY)


@pytest.fixture
def relay_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="rtgate.relay")
    return caplog


def relayed(caplog: pytest.LogCaptureFixture, model: str) -> list[str]:
    """The gateway's "relaying model …" log lines for ``model``."""
    return [r.getMessage() for r in caplog.records if f"relaying model {model} " in r.getMessage()]


async def closed_by(conn: Any) -> tuple[int, str]:
    """Read until the connection closes; the close code and reason the client received."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(PROMPT_S):
            while True:
                await conn.recv_bytes()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_ga_text_turn_is_spliced(relay: Relay, relay_log: pytest.LogCaptureFixture) -> None:
    """A GA SDK session relayed to the upstream rtgate runs on the spliced path and completes
    a text turn, every event valid for the SDK's models."""
    async with sdk(relay.gateway).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        assert [m.endswith("(spliced)") for m in relayed(relay_log, "gpt-realtime")] == [True]
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.until("session.updated")
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "spliced"}]})
        await conn.response.create()
        assert (await ev.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_streamed_audio_with_server_vad_through_the_splice(relay: Relay) -> None:
    """24 kHz audio streamed in 20 ms appends (server VAD on): the upstream commits it and
    answers with audio, through the spliced relay."""
    async with sdk(relay.gateway).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        for chunk in chunks(noise_pcm(1500, level=0.3), 20):
            await conn.input_audio_buffer.append(audio=chunk)
        for chunk in chunks(noise_pcm(1200, level=0.0), 20):
            await conn.input_audio_buffer.append(audio=chunk)
        events = await ev.until("response.done")
        kinds = {e["type"] for e in events}
        assert {"input_audio_buffer.speech_started", "input_audio_buffer.committed",
                "response.output_audio.delta"} <= kinds


@pytest.mark.parametrize(("model", "code", "reason"), [
    ("fault-error4000", 4000, "invalid_request_error.beta_api_shape_disabled"),
    ("fault-close", 1011, "upstream broke"),
])
async def test_upstream_close_code_reaches_the_sdk(relay: Relay, model: str, code: int, reason: str) -> None:
    """The upstream's close frame passes through the splice: the SDK sees its code and reason."""
    async with sdk(relay.gateway).realtime.connect(model=model) as conn:
        assert await closed_by(conn) == (code, reason)


async def test_client_close_code_reaches_the_upstream(relay: Relay) -> None:
    """Spliced, the client's own close frame goes upstream as sent (here 1000 from the SDK)."""
    relay.faults.watch_closed.clear()
    async with sdk(relay.gateway).realtime.connect(model="fault-watch") as conn:
        assert (await Events(conn).next())["type"] == "session.created"
    assert await asyncio.to_thread(relay.faults.watch_closed.wait, PROMPT_S)
    assert relay.faults.watch_closes[-1] == 1000


async def test_upstream_reset_during_audio_is_connection_lost(relay: Relay) -> None:
    """The upstream resets on the first append: error upstream_connection_lost, close 1011."""
    async with sdk(relay.gateway).realtime.connect(model="fault-reset") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        await conn.input_audio_buffer.append(audio=next(iter(chunks(noise_pcm(20), 20))))
        error = (await ev.until("error"))[-1]["error"]
        assert (error["type"], error["code"]) == ("server_error", "upstream_connection_lost")
        assert await closed_by(conn) == (1011, "server_error.upstream_connection_lost")


async def test_upstream_stall_is_a_timeout(relay: Relay) -> None:
    """The upstream goes silent after response.create: upstream_timeout, close 1011."""
    async with sdk(relay.gateway).realtime.connect(model="fault-stall-later") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        await conn.response.create()
        error = (await ev.until("error"))[-1]["error"]
        assert error["code"] == "upstream_timeout"
        assert await closed_by(conn) == (1011, "server_error.upstream_timeout")


async def test_local_model_on_a_relaying_gateway_is_not_spliced(
    relay: Relay, relay_log: pytest.LogCaptureFixture
) -> None:
    """A model served locally by a gateway that relays others: the hook armed before the
    accept is released and the local session runs as always."""
    async with sdk(relay.gateway).realtime.connect(model="gpt-4o-mini-realtime-preview") as conn:
        ev = Events(conn)
        created = await ev.until("session.created")
        assert created[-1]["session"]["model"] == "gpt-4o-mini-realtime-preview"
        await conn.input_audio_buffer.commit(event_id="c1")
        assert (await ev.until("error"))[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    assert relayed(relay_log, "gpt-4o-mini-realtime-preview") == []


@pytest.fixture(scope="module")
def parsed_gateway(relay: Relay) -> Iterator[ServerHandle]:
    """The same gateway with ``relay_splice = false``."""
    settings = relay.gateway.settings.replace(relay_splice=False)
    with running_server(settings, profiles=fake_profiles(), vad_factory=FakeVAD) as gateway:
        yield gateway


async def test_relay_splice_off_uses_the_parsed_path(
    relay: Relay, parsed_gateway: ServerHandle, relay_log: pytest.LogCaptureFixture
) -> None:
    """relay_splice = false: the same session is relayed frame by frame, and still works."""
    async with sdk(parsed_gateway).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.until("session.created")
        await conn.session.update(session={"type": "realtime", "instructions": "parsed"})
        assert (await ev.until("session.updated"))[-1]["session"]["instructions"] == "parsed"
    lines = relayed(relay_log, "gpt-realtime")
    assert lines and not any(line.endswith("(spliced)") for line in lines)


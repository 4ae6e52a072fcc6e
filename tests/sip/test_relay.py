"""SIP calls for a relayed model: rtgate terminates SIP/RTP and bridges the call to the
upstream's GA WebSocket session, G.711 untouched both ways.

The upstream is a second rtgate on loopback (fake speech backends), reached through the
gateway's config-file route; a small fault upstream drops its connection mid-call. The app
is the official SDK (webhook verification, ``calls.accept``, the sideband); every sideband
event is validated strictly.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from rtgate.server.settings import Settings
from rtgate.testing.audio import speech_pcm
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.sip_peer import SipPeer, free_sip_port, offer_sdp
from rtgate.testing.webhook_receiver import Receiver, running_receiver

from .conftest import KEY, SECRET, Events, delivery, sip_settings, wait_for

pytestmark = pytest.mark.asyncio

UPSTREAM_KEY = "sk-upstream-for-sip"
ANSWER = "It is noon. " + " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 4))
"""About 5 s of speech at the upstream's fake TTS pace: long enough to talk over."""
KEY_ENV = "RTGATE_TEST_SIP_RELAY_KEY"
CONFIG = """
[upstreams.cloud]
kind = "openai"
base_url = "http://127.0.0.1:{upstream}/v1"
api_key_env = "{key_env}"
model = "gpt-realtime"

[upstreams.flaky]
kind = "openai"
base_url = "http://127.0.0.1:{flaky}/v1"
api_key_env = "{key_env}"

[upstreams.down]
kind = "openai"
base_url = "http://127.0.0.1:{down}/v1"
api_key_env = "{key_env}"

[[routes]]
model = "relay-*"
upstream = "cloud"

[[routes]]
model = "flaky-*"
upstream = "flaky"

[[routes]]
model = "down-*"
upstream = "down"
"""


@dataclass
class RelayRig:
    gateway: ServerHandle
    upstream: ServerHandle
    receiver: Receiver
    flaky_updates: list[dict[str, Any]]

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.gateway.settings.sip.port)


def sessions(handle: ServerHandle) -> int:
    return int(httpx.get(f"{handle.http_url}/healthz").json()["sessions"])


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A GA upstream that confirms the configuration, then drops the TCP connection
    (no close frame) on the first audio it is sent; yields its port and the
    ``session.update`` sessions it received."""
    updates: list[dict[str, Any]] = []
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "event_id": "event_flaky_1", "session": {
            "type": "realtime", "object": "realtime.session", "id": "sess_flaky"}}))
        try:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "session.update":
                    updates.append(event["session"])
                    await ws.send(json.dumps({"type": "session.updated", "event_id": "event_flaky_2",
                                              "session": {**event["session"], "object": "realtime.session",
                                                          "id": "sess_flaky"}}))
                elif event["type"] == "input_audio_buffer.append":
                    ws.transport.abort()
                    return
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield port[0], updates
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(10)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, flaky: tuple[int, list[dict[str, Any]]]
        ) -> Iterator[RelayRig]:
    import os

    saved = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = UPSTREAM_KEY
    receiver = Receiver(SECRET, KEY)
    try:
        with (
            running_server(Settings(api_keys=(UPSTREAM_KEY,)), vad_factory=FakeVAD,
                           profiles=fake_profiles(FakeLLM(ANSWER), FakeTTS(ms_per_word=150),
                                                  FakeSTT("what time is it"))) as upstream,
            running_receiver(receiver) as url,
        ):
            config = Path(tmp_path_factory.mktemp("sip-relay")) / "rtgate.toml"
            config.write_text(CONFIG.format(upstream=upstream.port, flaky=flaky[0],
                                            down=free_sip_port(), key_env=KEY_ENV))
            settings = sip_settings(url, config_file=str(config), sip_media_timeout_s=10.0,
                                    relay_connect_timeout_s=2.0, relay_answer_deadline_s=3.0)
            with running_server(settings, profiles=fake_profiles(), vad_factory=FakeVAD) as gateway:
                receiver.base_url = gateway.base_url
                yield RelayRig(gateway, upstream, receiver, flaky[1])
    finally:
        if saved is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved


@pytest.fixture
def receiver(rig: RelayRig) -> Iterator[Receiver]:
    yield rig.receiver
    rig.receiver.mode, rig.receiver.session = "accept", {}
    rig.receiver.control_errors.clear()


async def test_relayed_call_spoken_dtmf_sideband_and_hangup(rig: RelayRig, receiver: Receiver) -> None:
    receiver.session = {"model": "relay-realtime", "instructions": "You answer the phone for ACME.",
                        "audio": {"output": {"voice": "marin"}}}
    peer = SipPeer(rig.sip)
    await peer.start()
    client = receiver_client(rig)
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        call_id = event.data.call_id
        await peer.answered()
        assert not receiver.control_errors
        assert sessions(rig.upstream) == 1  # the upstream session is open
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            created = await events.next()
            # The upstream's own session: the app's configuration, audio in the call's law.
            assert created["type"] == "session.created"
            assert created["session"]["instructions"] == "You answer the phone for ACME."
            assert created["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu"
            assert created["session"]["audio"]["output"]["format"]["type"] == "audio/pcmu"
            assert created["session"]["audio"]["output"]["voice"] == "marin"

            spoken_at = await peer.say(await speech_pcm("What time is it?"))
            seen = await events.until("response.done", within=30)
            types = [e["type"] for e in seen]
            for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                             "input_audio_buffer.committed", "response.created",
                             "response.output_audio_transcript.done"):
                assert expected in types, (expected, types)
            assert "response.output_audio.delta" not in types  # it went to the phone as RTP
            done = seen[-1]
            assert done["response"]["status"] == "completed"
            assert "noon" in done["response"]["output"][0]["content"][0]["transcript"]
            # The upstream's G.711 answer reached the phone as paced RTP.
            await peer.first_sound(spoken_at, within_s=10)
            await wait_for(lambda: peer.heard.loud_ms() >= 400, within=10)

            # Client events from the sideband go upstream; the upstream answers.
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            added = await events.until("conversation.item.added")
            assert added[-1]["item"]["content"][0]["text"] == "hi"

            peer.dtmf("7")
            dtmf = await events.until("input_audio_buffer.dtmf_event_received")
            assert dtmf[-1]["event"] == "7"

            # Refer works as for local calls; its failure is reported on the sideband.
            await client.realtime.calls.refer(call_id, target_uri="sip:agent@example.com")
            assert await asyncio.wait_for(peer.refer_to.get(), 5) == "sip:agent@example.com"
            peer.transfer_progress(603, "Decline")
            error = (await events.until("error"))[-1]["error"]
            assert error["code"] == "transfer_failed" and "603 Decline" in error["message"]

            await client.realtime.calls.hangup(call_id)
            await asyncio.wait_for(peer.bye.wait(), 5)
        await wait_for(lambda: sessions(rig.gateway) == 0 and sessions(rig.upstream) == 0)
    finally:
        await client.close()
        await peer.close()


async def test_caller_speaking_over_the_answer_truncates_it_upstream(rig: RelayRig,
                                                                   receiver: Receiver) -> None:
    """The answer arrives upstream-fast and is played at 20 ms a packet; the caller cuts it
    off, the queued rest is dropped and the upstream item is truncated to what was sent."""
    receiver.session = {"model": "relay-realtime"}
    peer = SipPeer(rig.sip)
    await peer.start()
    client = receiver_client(rig)
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        call_id = event.data.call_id
        await peer.answered()
        async with client.realtime.connect(call_id=call_id) as conn:
            events = Events(conn)
            await events.next()
            asked_at = asyncio.get_running_loop().time()
            await conn.response.create()
            done = (await events.until("response.done"))[-1]["response"]
            item_id = done["output"][0]["id"]
            await peer.first_sound(asked_at, within_s=10)
            # Measured as the truncation arrives: the caller is still talking, so the
            # answer to what they say has not started playing yet.
            speaking = asyncio.create_task(peer.say(await speech_pcm("Stop, please stop.")))
            seen = await events.until("conversation.item.truncated")
            heard_ms = peer.heard.loud_ms()
            await speaking
            assert "input_audio_buffer.speech_started" in [e["type"] for e in seen]
            truncated = seen[-1]
            assert truncated["item_id"] == item_id
            assert 200 <= truncated["audio_end_ms"] < 4000, truncated
            # The phone heard no more than the truncation point (tones have quiet edges).
            assert 0 < heard_ms <= truncated["audio_end_ms"] + 40, (heard_ms, truncated)
            await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
            item = (await events.until("conversation.item.retrieved"))[-1]["item"]
            transcript = item["content"][0]["transcript"]
            assert ANSWER.startswith(transcript) and len(transcript) < len(ANSWER), transcript
            await client.realtime.calls.hangup(call_id)
        await wait_for(lambda: sessions(rig.gateway) == 0 and sessions(rig.upstream) == 0)
    finally:
        await client.close()
        await peer.close()


async def test_pcma_call_and_caller_bye_close_the_upstream(rig: RelayRig, receiver: Receiver) -> None:
    receiver.session = {"model": "relay-realtime"}
    peer = SipPeer(rig.sip)
    await peer.start()
    client = receiver_client(rig)
    try:
        peer.invite(sdp=offer_sdp("127.0.0.1", peer.rtp_port, codecs="8 101"))
        event, _ = await delivery(receiver)
        await peer.answered()
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            created = await Events(conn).next()
            assert created["session"]["audio"]["input"]["format"]["type"] == "audio/pcma"
            assert created["session"]["audio"]["output"]["format"]["type"] == "audio/pcma"
            peer.hangup()
            await wait_for(lambda: sessions(rig.gateway) == 0 and sessions(rig.upstream) == 0)
        assert not peer.bye.is_set()  # the caller hung up: no BYE back
    finally:
        await client.close()
        await peer.close()


async def test_upstream_lost_mid_call_ends_it_with_an_error(rig: RelayRig, receiver: Receiver) -> None:
    receiver.session = {"model": "flaky-realtime", "instructions": "Flaky."}
    peer = SipPeer(rig.sip)
    await peer.start()
    client = receiver_client(rig)
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        await peer.answered()
        assert rig.flaky_updates[-1]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert "model" not in rig.flaky_updates[-1]
        async with client.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            assert (await events.next())["type"] == "session.created"
            await peer.say(await speech_pcm("Hello?"), then_silence_ms=200)
            error = (await events.until("error"))[-1]["error"]
            assert error["code"] == "upstream_connection_lost"
            assert error["type"] == "server_error" and "flaky" in error["message"]
            with pytest.raises(Exception):
                await events.next(within=5)  # the sideband is closed after the error
        await asyncio.wait_for(peer.bye.wait(), 5)
        await wait_for(lambda: sessions(rig.gateway) == 0)
    finally:
        await client.close()
        await peer.close()


async def test_unreachable_upstream_fails_accept_and_the_call_stays_pending(
        rig: RelayRig, receiver: Receiver) -> None:
    receiver.mode = "none"
    peer = SipPeer(rig.sip)
    await peer.start()
    client = receiver_client(rig)
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        call_id = event.data.call_id
        with pytest.raises(Exception) as info:
            await client.realtime.calls.accept(call_id, type="realtime", model="down-realtime")
        assert getattr(info.value, "status_code", None) == 502
        assert info.value.body["code"] == "upstream_unavailable"  # type: ignore[attr-defined]
        assert "'down'" in info.value.body["message"]  # type: ignore[attr-defined]
        # Still pending: the app decides again.
        await client.realtime.calls.reject(call_id, status_code=486)
        assert (await peer.response("INVITE")).status_code == 486
    finally:
        await client.close()
        await peer.close()


def receiver_client(rig: RelayRig) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=rig.gateway.base_url, api_key=KEY)

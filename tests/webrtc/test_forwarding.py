"""A call's sideband and hangup reaching another process of the deployment (server/forward.py).

Two real servers on loopback play two processes (two workers, or two nodes): each has a
:class:`~rtgate.server.node.Node` that knows the other's internal URL. The call is made on
``a``; the official SDK opens its sideband, and hangs it up, through ``b``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest

from rtgate.server.node import Node
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server

from .conftest import Events, client_for, no_calls_left, require_ice_host, wait_for
from .peer import BrowserPeer

pytestmark = pytest.mark.e2e

SESSION = {"type": "realtime", "model": "gpt-realtime", "output_modalities": ["text"]}


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ServerHandle, ServerHandle, Node, Node]]:
    require_ice_host()
    settings = Settings(api_keys=("sk-test",), webrtc_media_timeout_s=2.0,
                        webrtc_ice_connect_timeout_s=10.0)
    node_a, node_b = Node("aaaaaaaa"), Node("bbbbbbbb")

    def profiles():  # type: ignore[no-untyped-def]
        return fake_profiles(FakeLLM("It is noon."), FakeTTS(), FakeSTT("what time is it"))

    with running_server(settings, profiles=profiles(), vad_factory=FakeVAD, node=node_a) as a, \
            running_server(settings, profiles=profiles(), vad_factory=FakeVAD, node=node_b) as b:
        peers = {node_a.id: a.http_url, node_b.id: b.http_url}
        for node, handle in ((node_a, a), (node_b, b)):
            node.url, node.peers = handle.http_url, peers
        yield a, b, node_a, node_b


async def test_sideband_and_hangup_through_another_process_reach_the_call(
        pair: tuple[ServerHandle, ServerHandle, Node, Node]) -> None:
    a, b, node_a, _ = pair
    on_a, on_b = client_for(a), client_for(b)
    peer = BrowserPeer()
    try:
        raw = await on_a.realtime.calls.with_raw_response.create(
            sdp=await peer.offer(), session=SESSION)  # type: ignore[arg-type]
        assert raw.status_code == 201
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        assert call_id.startswith(f"rtc_{node_a.id}") and len(call_id) == 36
        await peer.accept(raw.http_response.text)
        await peer.until("session.created")

        async with on_b.realtime.connect(call_id=call_id) as sideband:
            events = Events(sideband)
            created = await events.next()
            assert created["type"] == "session.created"
            await sideband.session.update(session={"type": "realtime", "instructions": "Be terse."})
            assert (await events.until("session.updated"))[-1]["session"]["instructions"] == "Be terse."
            await sideband.response.create()
            done = (await events.until("response.done"))[-1]
            assert done["response"]["output"][0]["content"][0]["text"] == "It is noon."
            # The call itself (on a) saw the same response: the sideband steered a's call.
            assert (await peer.until("response.done"))[-1]["response"]["id"] == done["response"]["id"]

        hung = await on_b.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
        assert hung.status_code == 200
        await wait_for(lambda: no_calls_left(a))
        with pytest.raises(openai.NotFoundError) as gone:
            await on_b.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
        assert gone.value.code == "call_not_found"
    finally:
        await peer.close()


async def test_a_call_whose_process_is_gone_gets_call_not_found_at_once(
        pair: tuple[ServerHandle, ServerHandle, Node, Node]) -> None:
    _, b, _, _ = pair
    call_id = f"rtc_cccccccc{secrets.token_hex(12)}"  # a process no member knows
    on_b = client_for(b)
    with pytest.raises(openai.NotFoundError) as hangup:
        await on_b.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
    assert hangup.value.code == "call_not_found"
    assert "no longer running" in str(hangup.value)
    async with on_b.realtime.connect(call_id=call_id) as sideband:
        error = await Events(sideband).next()
    assert error["type"] == "error" and error["error"]["code"] == "call_not_found"
    assert "no longer running" in error["error"]["message"]


async def test_an_owner_that_does_not_answer_gets_a_server_error_not_a_hang(
        pair: tuple[ServerHandle, ServerHandle, Node, Node]) -> None:
    _, b, _, node_b = pair
    import socket

    with socket.socket() as closed:  # a port with nothing listening
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    node_b.peers = {**node_b.peers, "dddddddd": dead_url}
    call_id = f"rtc_dddddddd{secrets.token_hex(12)}"
    on_b = client_for(b)
    with pytest.raises(openai.APIStatusError) as hangup:
        await on_b.post(f"/realtime/calls/{call_id}/hangup", cast_to=httpx.Response)
    assert hangup.value.status_code == 502
    async with on_b.realtime.connect(call_id=call_id) as sideband:
        error = await Events(sideband).next()
    assert error["error"]["code"] == "call_owner_unreachable"
    assert error["error"]["type"] == "server_error"

"""Call control reaching another process of the deployment: the SIP call is held by ``a``
(the process with the SIP listener, e.g. worker 0); the app's SDK talks to ``b``, which
forwards accept, reject, refer, hangup and the sideband to ``a`` (server/forward.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI

from rtgate.server.node import Node
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.testing.sip_peer import SipPeer

from .conftest import KEY, SECRET, Events, Receiver, delivery, running_receiver, sip_settings, wait_for

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ServerHandle, ServerHandle, Receiver]]:
    receiver = Receiver(SECRET, KEY)
    node_a, node_b = Node("aaaaaaaa"), Node("bbbbbbbb")

    def profiles():  # type: ignore[no-untyped-def]
        return fake_profiles(FakeLLM("It is noon."), FakeTTS(), FakeSTT("what time is it"))

    with running_receiver(receiver) as url, \
            running_server(sip_settings(url), profiles=profiles(), vad_factory=FakeVAD, node=node_a) as a, \
            running_server(Settings(api_keys=(KEY,)), profiles=profiles(), vad_factory=FakeVAD,
                           node=node_b) as b:
        peers = {node_a.id: a.http_url, node_b.id: b.http_url}
        for node, handle in ((node_a, a), (node_b, b)):
            node.url, node.peers = handle.http_url, peers
        receiver.base_url = b.base_url  # the app only knows b
        yield a, b, receiver


async def test_accept_refer_sideband_and_hangup_through_another_process(
        pair: tuple[ServerHandle, ServerHandle, Receiver]) -> None:
    a, b, receiver = pair
    peer = SipPeer(("127.0.0.1", a.settings.sip.port))
    await peer.start()
    try:
        peer.invite()
        event, _ = await delivery(receiver)
        assert event.data.call_id.startswith("rtc_aaaaaaaa")
        await peer.answered()  # accepted through b
        assert not receiver.control_errors
        on_b = AsyncOpenAI(base_url=b.base_url, api_key=KEY)
        async with on_b.realtime.connect(call_id=event.data.call_id) as conn:
            events = Events(conn)
            assert (await events.next())["type"] == "session.created"
            await on_b.realtime.calls.refer(event.data.call_id, target_uri="sip:desk@example.com")
            assert await asyncio.wait_for(peer.refer_to.get(), 5) == "sip:desk@example.com"
            await on_b.realtime.calls.hangup(event.data.call_id)
            await asyncio.wait_for(peer.bye.wait(), 5)
        await on_b.close()
    finally:
        await peer.close()


async def test_reject_through_another_process(pair: tuple[ServerHandle, ServerHandle, Receiver]) -> None:
    a, _, receiver = pair
    receiver.mode = "reject"
    peer = SipPeer(("127.0.0.1", a.settings.sip.port))
    await peer.start()
    try:
        peer.invite()
        assert peer.call_ is not None
        with pytest.raises(RuntimeError, match="486"):
            await peer.call_.wait_answered(10)
        await wait_for(lambda: not receiver.control_errors and receiver.attempts >= 1)
    finally:
        receiver.mode = "accept"
        await peer.close()

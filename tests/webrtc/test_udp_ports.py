"""webrtc_udp_port_min/max: a call's host ICE candidates bind ports of a configured UDP range."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rtgate.cli import main
from rtgate.server.call_registry import webrtc_settings
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import ServerHandle, fake_profiles, running_server
from rtgate.transport import ice_ports

from .conftest import no_calls_left, require_ice_host, wait_for
from .peer import BrowserPeer

WIDTH = 4


def host_addresses() -> list[str]:
    from aioice.ice import get_host_addresses

    return get_host_addresses(use_ipv4=True, use_ipv6=True)


def occupy(port: int) -> list[socket.socket]:
    """UDP sockets holding ``port`` on every host address aioice would gather."""
    held: list[socket.socket] = []
    try:
        for address in host_addresses():
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            held.append(sock)
            sock.bind((address, port))
    except OSError:
        for sock in held:
            sock.close()
        raise
    return held


def free_range(width: int) -> tuple[int, int]:
    """``width`` consecutive ports free on every host address, below the kernel's ephemeral
    range (so the test's own peer cannot take one by chance)."""
    for _ in range(200):
        low = random.randrange(20000, 32000)
        held: list[socket.socket] = []
        try:
            for port in range(low, low + width):
                held += occupy(port)
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return low, low + width - 1
    raise RuntimeError("no free UDP port range found")


@pytest.fixture(scope="module")
def ranged() -> Iterator[tuple[ServerHandle, tuple[int, int]]]:
    require_ice_host()
    low, high = free_range(WIDTH)
    settings = Settings(api_keys=("sk-test",), webrtc_media_timeout_s=2.0,
                        webrtc_ice_connect_timeout_s=10.0,
                        webrtc_udp_port_min=low, webrtc_udp_port_max=high)
    with running_server(
        settings,
        profiles=fake_profiles(FakeLLM("Hi."), FakeTTS(ms_per_word=100), FakeSTT("hello")),
        vad_factory=FakeVAD,
    ) as handle:
        yield handle, (low, high)


def candidate_ports(sdp: str) -> list[tuple[str, int]]:
    """(type, port) of every ``a=candidate`` line of an SDP."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            out.append((fields[fields.index("typ") + 1], int(fields[5])))
    return out


async def post_offer(handle: ServerHandle, sdp: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{handle.base_url}/realtime/calls", content=sdp.encode(),
                               headers={"Authorization": "Bearer sk-test",
                                        "Content-Type": "application/sdp"})


async def hangup(handle: ServerHandle, response: httpx.Response) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(f"{handle.http_url}{response.headers['location']}/hangup",
                        headers={"Authorization": "Bearer sk-test"})


# --------------------------------------------------------------------------- calls


@pytest.mark.e2e
async def test_answer_host_candidates_use_ports_of_the_range_and_the_call_connects(
    ranged: tuple[ServerHandle, tuple[int, int]],
) -> None:
    """Every candidate of the SDP answer has a port of the range; the call still works."""
    handle, (low, high) = ranged
    peer = BrowserPeer()
    try:
        response = await post_offer(handle, await peer.offer())
        assert response.status_code == 201, response.text
        ports = candidate_ports(response.text)
        assert ports and all(kind == "host" for kind, _ in ports), ports
        assert all(low <= port <= high for _, port in ports), (ports, low, high)
        await peer.accept(response.text)
        await peer.until("session.created")
        await wait_for(lambda: peer.dc.readyState == "open")
        await hangup(handle, response)
    finally:
        await peer.close()
    await wait_for(lambda: no_calls_left(handle))


@pytest.mark.e2e
async def test_exhausted_range_gets_503_and_leaves_nothing_behind(
    ranged: tuple[ServerHandle, tuple[int, int]],
) -> None:
    """Every port of the range taken → 503 udp_ports_exhausted naming the range; once a
    port is free again, calls are answered again."""
    handle, (low, high) = ranged
    await wait_for(lambda: no_calls_left(handle))
    held = {port: occupy(port) for port in range(low, high + 1)}
    peer = BrowserPeer()
    try:
        response = await post_offer(handle, await peer.offer())
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "udp_ports_exhausted")
        assert f"{low}-{high}" in error["message"]
        assert no_calls_left(handle)
        for sock in held.pop(high):  # one port free again
            sock.close()
        response = await post_offer(handle, await peer.offer())
        assert response.status_code == 201, response.text
        await hangup(handle, response)
    finally:
        for sock in (s for socks in held.values() for s in socks):
            sock.close()
        await peer.close()
    await wait_for(lambda: no_calls_left(handle))


# --------------------------------------------------------------------------- the hook


def test_aioice_still_has_the_hook_point() -> None:
    """Fails after an aioice upgrade that changed the host-candidate gathering this relies on
    (the server would then log a warning and use any port): re-check ice_ports.py against
    the new aioice and widen SUPPORTED_AIOICE."""
    ice_ports.hook_problem.cache_clear()
    assert ice_ports.hook_problem() is None


async def test_changed_aioice_internals_fall_back_to_any_port_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from aiortc import RTCPeerConnection

    monkeypatch.setattr(ice_ports, "hook_problem", lambda: "aioice changed")
    monkeypatch.setattr(ice_ports, "_warned", set())
    pc = RTCPeerConnection()
    try:
        gatherer = pc.addTransceiver("audio").receiver.transport.transport.iceGatherer
        with caplog.at_level(logging.WARNING, "rtgate.webrtc"):
            assert not ice_ports.restrict_host_ports([gatherer], 40000, 40009)
        assert "aioice changed" in caplog.text
        assert "get_component_candidates" not in vars(gatherer._connection)
    finally:
        await pc.close()


async def test_gathering_binds_in_range_and_reports_exhaustion() -> None:
    """Without a server: an aiortc gatherer restricted to a range binds there; with every
    port taken, gathering raises PortRangeExhausted (an EADDRINUSE OSError)."""
    from aiortc import RTCPeerConnection

    require_ice_host()
    low, high = free_range(2)
    for taken in (False, True):
        held = [s for port in range(low, high + 1) for s in occupy(port)] if taken else []
        pc = RTCPeerConnection()
        try:
            gatherer = pc.addTransceiver("audio").receiver.transport.transport.iceGatherer
            assert ice_ports.restrict_host_ports([gatherer], low, high)
            if taken:
                with pytest.raises(ice_ports.PortRangeExhausted) as info:
                    await gatherer.gather()
                assert info.value.errno == errno.EADDRINUSE
                assert f"{low}-{high}" in str(info.value)
            else:
                await gatherer.gather()
                ports = [c.port for c in gatherer.getLocalCandidates()]
                assert ports and all(low <= p <= high for p in ports)
        finally:
            for sock in held:
                sock.close()
            await pc.close()


def test_random_port_order_tries_every_port_once() -> None:
    rng = random.Random(5)
    for low, high in ((1024, 1024), (5000, 5001), (6000, 6006), (1024, 65535)):
        order = list(ice_ports.random_port_order(low, high, rng))
        assert sorted(order) == list(range(low, high + 1))
    orders = {tuple(ice_ports.random_port_order(7000, 7009, rng)) for _ in range(20)}
    assert len(orders) > 1


# --------------------------------------------------------------------------- settings


def test_port_range_settings_from_env_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env({"RTGATE_WEBRTC_UDP_PORT_MIN": "40000",
                                  "RTGATE_WEBRTC_UDP_PORT_MAX": "40099"})
    webrtc = webrtc_settings(settings)
    assert (webrtc.udp_port_min, webrtc.udp_port_max) == (40000, 40099)
    assert "webrtc_udp_port_min" in settings.describe()
    assert (Settings().webrtc.udp_port_min, Settings().webrtc.udp_port_max) == (0, 0)
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    assert "--webrtc-udp-ports MIN-MAX" in capsys.readouterr().out


@pytest.mark.parametrize(("low", "high", "says"), [
    (40000, 0, "set both or neither"),
    (0, 40000, "set both or neither"),
    (80, 90, "1024-65535"),
    (40000, 70000, "1024-65535"),
    (40010, 40000, "above the maximum"),
])
def test_invalid_port_range_is_refused_at_start_up(
    low: int, high: int, says: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(webrtc_udp_port_min=low, webrtc_udp_port_max=high)
    with pytest.raises(ValueError, match=says):
        Settings.from_env({"RTGATE_WEBRTC_UDP_PORT_MIN": str(low),
                           "RTGATE_WEBRTC_UDP_PORT_MAX": str(high)})
    if low and high:
        assert main(["serve", "--webrtc-udp-ports", f"{low}-{high}"]) == 2
        assert says in capsys.readouterr().err


def test_malformed_port_range_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--webrtc-udp-ports", "40000"])
    assert info.value.code == 2
    assert "expected MIN-MAX" in capsys.readouterr().err


async def test_stun_still_gives_server_reflexive_candidates_of_the_ranged_sockets() -> None:
    """With a STUN server configured, the srflx candidates are queried over the sockets of
    the range (a local STUN responder echoes the source address)."""
    import asyncio

    from aioice import stun
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

    require_ice_host()
    ipv4 = [a for a in host_addresses() if ":" not in a]
    if not ipv4:
        pytest.skip("STUN server-reflexive candidates are IPv4 only")
    queried: list[int] = []

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            request = stun.parse_message(data)
            queried.append(addr[1])
            response = stun.Message(message_method=stun.Method.BINDING,
                                    message_class=stun.Class.RESPONSE,
                                    transaction_id=request.transaction_id)
            response.attributes["XOR-MAPPED-ADDRESS"] = ("203.0.113.7", addr[1])
            self.transport.sendto(bytes(response), addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(Responder, local_addr=(ipv4[0], 0))
    low, high = free_range(2)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[
        RTCIceServer(f"stun:{ipv4[0]}:{server.get_extra_info('sockname')[1]}")]))
    try:
        gatherer = pc.addTransceiver("audio").receiver.transport.transport.iceGatherer
        assert ice_ports.restrict_host_ports([gatherer], low, high)
        await gatherer.gather()
        candidates = gatherer.getLocalCandidates()
        srflx = [c for c in candidates if c.type == "srflx"]
        assert [c.ip for c in srflx] == ["203.0.113.7"] * len(ipv4)
        assert all(low <= c.port <= high for c in srflx) and queried
        assert all(low <= port <= high for port in queried)
        assert all(low <= c.port <= high for c in candidates if c.type == "host")
    finally:
        server.close()
        await pc.close()



class WrappingBindLoop(asyncio.SelectorEventLoop):
    """An event loop whose UDP binds fail the way uvloop's do when the port is taken: an
    OSError without errno, raised from the system's EADDRINUSE."""

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        try:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        except OSError as exc:
            raise OSError(f"could not bind to local_addr {kwargs.get('local_addr')}") from exc


def test_a_full_range_is_reported_when_the_loop_wraps_the_bind_error() -> None:
    """Under uvloop (which `--loop auto` picks where installed) a taken port fails with an
    errno-less OSError; it still counts as taken, so a full range is PortRangeExhausted."""
    with asyncio.Runner(loop_factory=WrappingBindLoop) as runner, pytest.raises(
        ice_ports.PortRangeExhausted
    ):
        runner.run(ice_ports.bind_in_range(lambda: None, "127.0.0.1", 40000, 40003))

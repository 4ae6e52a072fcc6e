"""Host ICE candidates of calls on a configured UDP port range (``webrtc_udp_port_min/max``).

aioice binds each host candidate with ``local_addr=(address, 0)`` (any port) inside
``Connection.get_component_candidates`` and aiortc offers no option for it. For rtgate's own
peer connections only, :func:`restrict_host_ports` replaces that one gathering method *on
each call's* ``aioice.Connection`` instance (nothing global is patched) with
:func:`_gather_in_range`: it binds every host address on a free port of the range, tried in
a random order, then lets aioice's unchanged method add the relayed (TURN) candidates and
asks STUN for the server-reflexive ones of the new sockets, as aioice does.

This leans on aioice internals, so :func:`hook_problem` checks them (the aioice version and
every name used); if they changed, calls log a warning and keep aioice's any-port behaviour,
and ``tests/webrtc/test_udp_ports.py`` fails so that an upgrade is caught.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import ipaddress
import logging
import math
import random
import socket
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("rtgate.webrtc")

SUPPORTED_AIOICE = ((0, 13),)
"""aioice major.minor versions whose host-candidate gathering this module reproduces."""


class PortRangeExhausted(OSError):
    """No port of the configured UDP range is free on a host address."""

    def __init__(self, address: str, port_min: int, port_max: int) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"every UDP port of {port_min}-{port_max} (webrtc_udp_port_min/max) is in use "
            f"on {address}",
        )
        self.address = address
        self.port_range = (port_min, port_max)


def random_port_order(port_min: int, port_max: int, rng: random.Random | None = None
                      ) -> Iterator[int]:
    """Every port of ``port_min..port_max`` once, in a random order (a random start and a
    random stride coprime with the range's size: O(1) set-up however wide the range)."""
    rng = rng or random.SystemRandom()
    size = port_max - port_min + 1
    start = rng.randrange(size)
    stride = rng.randrange(1, size) if size > 1 else 1
    while math.gcd(stride, size) != 1:
        stride = stride % (size - 1) + 1
    for i in range(size):
        yield port_min + (start + i * stride) % size


@functools.cache
def hook_problem() -> str | None:
    """``None`` when the installed aioice has the internals this module relies on; else why
    not (the caller then falls back to any port)."""
    try:
        import aioice
        from aioice import ice, turn
        from aioice.candidate import Candidate, candidate_foundation, candidate_priority

        del Candidate, candidate_foundation, candidate_priority
        used = (ice.StunProtocol, ice.server_reflexive_candidate, turn.UDP_SOCKET_BUFFER_SIZE)
        del used
    except (ImportError, AttributeError) as exc:
        return f"aioice internals moved ({exc})"
    version = tuple(int(p) for p in aioice.__version__.split(".")[:2] if p.isdigit())
    if version not in SUPPORTED_AIOICE:
        return f"aioice {aioice.__version__} is not a version this was written for (0.13)"
    method = getattr(ice.Connection, "get_component_candidates", None)
    if method is None:
        return "aioice.ice.Connection.get_component_candidates is gone"
    if list(inspect.signature(method).parameters) != ["self", "component", "addresses", "timeout"]:
        return "aioice.ice.Connection.get_component_candidates changed its signature"
    source = inspect.getsource(method)
    for needle in ("local_addr=(address, 0)", "self._protocols += host_protocols",
                   "for protocol in host_protocols", "if self.turn_server"):
        if needle not in source:
            return f"aioice's get_component_candidates changed (no {needle!r})"
    if "self.get_component_candidates(" not in inspect.getsource(ice.Connection.gather_candidates):
        return "aioice's gather_candidates no longer calls get_component_candidates"
    probe = ice.Connection(ice_controlling=False)
    if not hasattr(probe, "stun_server") or not isinstance(getattr(probe, "_protocols", None), list):
        return "aioice.ice.Connection has no stun_server or _protocols"
    return None


def restrict_host_ports(gatherers: Any, port_min: int, port_max: int) -> bool:
    """Make the ``aioice.Connection`` of each (not yet gathered) aiortc ``RTCIceGatherer``
    bind its host candidates on ``port_min..port_max``. Returns ``False`` (after a warning)
    when aioice's internals changed and any port is used."""
    from aioice.ice import Connection

    gatherers = list(gatherers)
    problem = hook_problem()
    if problem is None and not all(isinstance(getattr(g, "_connection", None), Connection)
                                   for g in gatherers):
        problem = "aiortc's RTCIceGatherer no longer holds an aioice Connection in _connection"
    if problem is not None:
        if problem not in _warned:
            _warned.add(problem)
            log.warning("webrtc_udp_port_min/max ignored, calls use any UDP port: %s", problem)
        return False
    for gatherer in gatherers:
        if gatherer.state != "new":
            raise RuntimeError("the ICE gatherer already started; the port range comes too late")
        connection = gatherer._connection
        connection.get_component_candidates = functools.partial(
            _gather_in_range, connection, port_min, port_max)
    return True


_warned: set[str] = set()


async def bind_in_range(protocol_factory: Any, address: str, port_min: int, port_max: int
                        ) -> tuple[asyncio.DatagramTransport, Any]:
    """A UDP endpoint on ``address`` and a free port of the range, tried in a random order.

    Raises :class:`PortRangeExhausted` when every port is in use; any other bind error
    (the address is unusable) propagates at once, as it would for any port."""
    loop = asyncio.get_running_loop()
    for port in random_port_order(port_min, port_max):
        try:
            return await loop.create_datagram_endpoint(protocol_factory,
                                                       local_addr=(address, port))
        except OSError as exc:
            if _bind_errno(exc) not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise PortRangeExhausted(address, port_min, port_max)


def _bind_errno(exc: OSError) -> int | None:
    """The errno of a failed bind. uvloop (``--loop auto`` runs it where installed) raises
    ``OSError("could not bind to local_addr …")`` without one, from the system's error."""
    if exc.errno is None and isinstance(exc.__cause__, OSError):
        return exc.__cause__.errno
    return exc.errno


async def _gather_in_range(connection: Any, port_min: int, port_max: int, component: int,
                           addresses: list[str], timeout: int = 5,  # noqa: ASYNC109 (aioice's)
                           ) -> list[Any]:
    """aioice 0.13's ``Connection.get_component_candidates`` with host sockets on the range."""
    from aioice import ice, turn
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority

    candidates: list[Any] = []
    host_protocols: list[Any] = []
    try:
        for address in addresses:
            try:
                transport, protocol = await bind_in_range(
                    lambda: ice.StunProtocol(connection), address, port_min, port_max)
            except PortRangeExhausted:
                raise
            except OSError as exc:
                log.info("ICE: could not bind to %s - %s", address, exc)
                continue
            host_protocols.append(protocol)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
    except BaseException:
        for protocol in host_protocols:
            protocol.transport.close()
        raise
    connection._protocols += host_protocols

    # Server-reflexive candidates of the new sockets (IPv4 only), as aioice queries them.
    reflexive: list[asyncio.Task[Any]] = []
    if connection.stun_server:
        reflexive = [
            asyncio.create_task(ice.server_reflexive_candidate(protocol, connection.stun_server))
            for protocol in host_protocols
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]

    async def stun() -> list[Any]:
        if not reflexive:
            return []
        done, pending = await asyncio.wait(reflexive, timeout=timeout)
        for task in pending:
            task.cancel()
        return [task.result()[0] for task in done if task.exception() is None]

    # aioice's own method with no host address to bind adds only the TURN (relayed)
    # candidate: its STUN queries go over its host sockets, and it has none.
    relayed = type(connection).get_component_candidates(connection, component, [], timeout)
    srflx, turned = await asyncio.gather(stun(), relayed)
    return [*candidates, *srflx, *turned]

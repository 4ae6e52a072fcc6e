"""The media side of an accepted SIP call, shared by the local accept (server/sip_routes.py)
and the relayed one (server/sip_relay.py): an RTP port, the SDP answer and the aiortp session,
and the ``404 call_not_found`` both answer for a call that is no longer pending."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from aiortp import PortAllocator
from aiosipua import SdpMessage
from starlette.responses import Response

from ..protocol.errors import RealtimeError, echo
from .client_secrets import error_response
from .sip import SipEndpoint, answer_sdp


def not_found(call_id: str, what: str) -> Response:
    return error_response(404, RealtimeError(
        f"No {what} call with id '{echo(call_id)}'.", "call_not_found", "call_id"))


def local_ip_towards(host: str, configured: str) -> str:
    """The address to put in the SDP answer: ``sip_host`` when it is a concrete address,
    else the local address the kernel routes towards the caller."""
    if configured not in ("0.0.0.0", "::", ""):
        return configured
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # UDP connect sends nothing: it only picks the route
        return str(probe.getsockname()[0])


_allocators: dict[tuple[int, int], PortAllocator] = {}


def _allocator(low: int, high: int) -> PortAllocator:
    if (low, high) not in _allocators:
        _allocators[(low, high)] = PortAllocator((low, high))
    return _allocators[(low, high)]


@dataclass(frozen=True, slots=True)
class CallMedia:
    """An accepted call's RTP: the session, its port (released through ``allocator`` when
    the call ends) and the SDP answer that names them."""

    rtp: Any
    port: int
    allocator: PortAllocator
    answer: SdpMessage
    payload_type: int


async def open_call_media(settings: Any, endpoint: SipEndpoint, incoming: Any, session_class: Any,
                          *, plc: bool) -> CallMedia:
    """Allocate an RTP port, answer the caller's offer and open ``session_class`` (an aiortp
    session) towards its media address, taking RTP only from that address and the SIP peer
    (the INVITE was refused if the media address is neither the peer nor an allowed source).
    The port is released again if any step fails."""
    offer = incoming.sdp_offer
    assert offer is not None and offer.rtp_address is not None
    local_ip = local_ip_towards(incoming.source_addr[0], endpoint.host)
    allocator = _allocator(settings.sip.rtp_port_min, settings.sip.rtp_port_max)
    rtp_port, _rtcp = await allocator.allocate()
    try:
        answer, payload_type, dtmf_type = answer_sdp(offer, local_ip, rtp_port)
        rtp = await session_class.create(
            local_addr=(local_ip, rtp_port), remote_addr=offer.rtp_address,
            payload_type=payload_type, dtmf_payload_type=dtmf_type,
            jitter_prefetch=settings.sip.jitter_frames, plc=plc)
        assert isinstance(rtp, session_class)  # aiortp's factory builds cls
    except Exception:
        await allocator.release(rtp_port)
        raise
    rtp.allowed_hosts = frozenset((offer.rtp_address[0], incoming.source_addr[0]))
    return CallMedia(rtp, rtp_port, allocator, answer, payload_type)

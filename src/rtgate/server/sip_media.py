"""What the local accept (server/sip_routes.py) and the relayed one (server/sip_relay.py) of
a SIP call share: its media (an RTP port, the SDP answer and the aiortp session), its
bookkeeping from the 200 OK to the end (:class:`AcceptedCall`), and the ``404
call_not_found`` both answer for a call that is no longer pending."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortp import PortAllocator
from aiosipua import SdpMessage
from starlette.responses import Response

from ..protocol.errors import RealtimeError, echo
from .client_secrets import error_response
from .host import Ticket, detached
from .sip import PendingCall, SipEndpoint, answer_sdp
from .state import ServerState

if TYPE_CHECKING:
    from ..transport.sip_call import SipCall
    from ..transport.sip_relay import RelayedSipCall


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


class AcceptedCall:
    """The bookkeeping of one accepted SIP call, local or relayed: pass :meth:`send_bye` and
    :meth:`on_closed` to the call, then :meth:`answer` registers it (live calls, the SIP
    dialogs, the drain) and sends the 200 OK. When the call closes everything is undone
    once: the drain hook, the RTP port, the registrations, the session's ticket."""

    def __init__(self, state: ServerState, endpoint: SipEndpoint, pending: PendingCall,
                 media: CallMedia, ticket: Ticket) -> None:
        self._state = state
        self._endpoint = endpoint
        self._pending = pending
        self._media = media
        self._ticket = ticket
        self._unregister: Callable[[], None] | None = None

    def send_bye(self) -> None:
        incoming = self._pending.incoming
        incoming._stop_retransmissions()
        incoming.hangup()

    def on_closed(self, call: SipCall | RelayedSipCall) -> None:
        if self._unregister is not None:
            self._unregister()
        detached(self._media.allocator.release(self._media.port))
        call_id = self._pending.incoming.call_id
        self._endpoint.accepted.pop(call_id, None)
        self._endpoint.transfers.pop(call_id, None)
        self._endpoint.dialogs.pop(call.id, None)
        self._pending.uas._calls.pop(call_id, None)
        self._state.calls.calls.pop(call.id, None)
        self._ticket.release_soon()

    def answer(self, call: SipCall | RelayedSipCall, on_drain: Callable[[], None]) -> None:
        """Register ``call`` (``on_drain`` ends it when the process drains) and send the
        200 OK with the SDP answer."""
        incoming = self._pending.incoming
        self._state.calls.calls[call.id] = call
        self._endpoint.accepted[incoming.call_id] = call
        self._endpoint.dialogs[call.id] = (incoming, self._pending.uas)
        self._unregister = self._state.drain.register(on_drain)
        incoming.accept(self._media.answer)

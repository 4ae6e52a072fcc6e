"""The SIP endpoint: incoming calls from a trunk or PBX, until the app accepts or rejects them.

Signalling is aiosipua's (RFC 3261 parsing, transactions, dialogs, 2xx retransmission
until ACK, CANCEL, BYE, re-INVITE, REFER); media is aiortp's (transport/sip_call.py);
docs/sip.md says why these libraries. What this module adds is the call flow of the
cloud's SIP interface:

1. An INVITE from an allowed source (``sip_allowed_sources``, CIDRs; others are dropped
   unanswered, as a trunk-facing endpoint should) — with ``sip_digest_username`` set, also
   with valid digest credentials, else ``401`` and a challenge (server/sip_auth.py) —
   gets ``100 Trying`` (aiosipua), then
   ``488 Not Acceptable Here`` unless its SDP offers PCMU or PCMA over plain RTP, ``503``
   while draining or at the session limit, else ``180 Ringing``.
2. A ``realtime.call.incoming`` webhook (``data.call_id``, ``data.sip_headers``) goes to
   every ``webhook_urls`` entry, signed with ``webhook_secret`` (server/webhooks.py),
   retried with backoff.
3. The app answers on ``POST …/realtime/calls/{call_id}/accept`` (server/sip_routes.py):
   the call gets its session and RTP, and ``200 OK`` with the SDP answer goes out. Or it
   rejects (``reject``, default 603). A call nobody decides on within
   ``sip_answer_timeout_s`` is declined: ``408 Request Timeout`` when a webhook was
   delivered, ``480 Temporarily Unavailable`` when none could be.
4. A CANCEL before the decision ends the pending call (aiosipua answers 200 and 487).

Malformed requests: aiosipua answers ``400`` when it can route an answer (a request with a
Via), and drops what it cannot parse at all, as RFC 3261 §18 allows for datagrams; an
INVITE whose SDP cannot be parsed gets ``400`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiosipua import IncomingCall, SdpMessage, SipUAS, negotiate_sdp
from aiosipua.headers import prettify_header_name
from aiosipua.message import SipRequest, SipResponse
from aiosipua.transport import SipTransport, TcpSipTransport, UdpSipTransport, _UdpProtocol
from aiosipua.uac import SipUAC

from ..protocol.errors import RealtimeError, echo
from ..transport.sip_call import SipCall, SipMediaSettings
from ..transport.sip_relay import RelayedSipCall
from .call_registry import new_call_id
from .settings import Settings
from .sip_auth import DigestGuard
from .state import ServerState
from .webhooks import deliver

log = logging.getLogger("rtgate.sip")

G711_PAYLOAD_TYPES = (0, 8)
"""PCMU and PCMA, the static RTP payload types (RFC 3551)."""
HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization"})
"""INVITE headers left out of the webhook's ``sip_headers`` (as the cloud does)."""


class _DatagramProtocol(_UdpProtocol):
    """aiosipua's UDP protocol without its ``isinstance(transport, DatagramTransport)``
    assertion, which fails on CPython 3.11 (its selector datagram transport does not
    derive from ``asyncio.DatagramTransport``) and logs an error for every listener."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._udp_transport = transport  # type: ignore[assignment]


class UdpTransport(UdpSipTransport):
    """aiosipua's UDP SIP transport, started with :class:`_DatagramProtocol`."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _DatagramProtocol(self),
                                                           local_addr=self.local_addr)
        self._udp_transport = transport


class TlsTransport(TcpSipTransport):
    """SIP over TLS (RFC 3261 §26.2, ``sips:``): aiosipua's TCP transport with its listener
    and outgoing connections wrapped in ``context``. Framing, dispatch and answers on the
    connection are the TCP transport's."""

    def __init__(self, *, local_addr: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(local_addr=local_addr)
        self.context = context

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle_connection, host=self.local_addr[0], port=self.local_addr[1], ssl=self.context)

    async def connect(
        self, remote_addr: tuple[str, int]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        client = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(remote_addr[0], remote_addr[1], ssl=client)
        self._connections[remote_addr] = (reader, writer)
        self._spawn(self._handle_incoming(reader, writer, remote_addr))
        return reader, writer


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The server side of SIP over TLS: TLS 1.2 or later, the configured certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def parse_sources(sources: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``sip_allowed_sources`` as networks; ``ValueError`` names a bad entry."""
    networks = []
    for source in sources:
        try:
            networks.append(ipaddress.ip_network(source.strip(), strict=False))
        except ValueError:
            raise ValueError(f"sip_allowed_sources: {source!r} is not an address or CIDR "
                             "(e.g. 203.0.113.0/24)") from None
    return tuple(networks)


def source_allowed(host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def offer_problem(offer: SdpMessage | None) -> str | None:
    """Why an SDP offer cannot be answered (``None``: it can, with PCMU or PCMA)."""
    if offer is None:
        return "no SDP offer (offerless INVITEs are not supported)"
    audio = offer.audio
    if audio is None or audio.port == 0:
        return "no audio stream offered"
    if audio.proto.upper() != "RTP/AVP":
        return f"media transport {audio.proto} is not supported (plain RTP/AVP only)"
    if offer.rtp_address is None:
        return "no connection address for the audio stream"
    if not any(codec.payload_type in G711_PAYLOAD_TYPES for codec in audio.codecs):
        offered = ", ".join(c.encoding_name or str(c.payload_type) for c in audio.codecs)
        return f"no supported codec offered ({offered or 'none'}; supported: PCMU, PCMA)"
    return None


def telephone_event_type(offer: SdpMessage) -> int:
    """The offer's RFC 4733 payload type (answered with the same number), else 101."""
    audio = offer.audio
    for codec in audio.codecs if audio is not None else ():
        if codec.encoding_name.lower() == "telephone-event":
            return codec.payload_type
    return 101


def answer_sdp(offer: SdpMessage, local_ip: str, rtp_port: int) -> tuple[SdpMessage, int, int]:
    """The SDP answer for ``offer``: ``(answer, chosen payload type, DTMF payload type)``.

    Raises ``SdpNegotiationError`` when no codec matches (:func:`offer_problem` first)."""
    dtmf = telephone_event_type(offer)
    answer, chosen = negotiate_sdp(offer, local_ip, rtp_port, supported_codecs=list(G711_PAYLOAD_TYPES),
                                   dtmf_payload_type=dtmf, session_name="rtgate")
    return answer, chosen, dtmf


def sip_headers(request: SipRequest) -> list[dict[str, str]]:
    """The INVITE's headers for the webhook, authorization headers left out."""
    return [
        {"name": prettify_header_name(name), "value": value}
        for name, values in request.headers.items()
        if name.lower() not in HIDDEN_HEADERS
        for value in values
    ]


@dataclass(eq=False)
class PendingCall:
    """An INVITE waiting for the app's accept or reject."""

    call_id: str
    incoming: IncomingCall
    uas: SipUAS
    created: float = field(default_factory=time.monotonic)
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def sip_call_id(self) -> str:
        return self.incoming.call_id


class SipEndpoint:
    """This process's SIP listeners, pending calls and the link to the call registry.

    ``accepted[sip Call-ID]`` maps live dialogs to their :class:`SipCall`, which also sits
    in the call registry under its ``rtc_…`` id (sideband, hangup). Start with
    :meth:`start`, stop with :meth:`aclose`.
    """

    def __init__(self, settings: Settings, state: ServerState) -> None:
        self.settings = settings
        self.state = state
        self.networks = parse_sources(settings.sip.allowed_sources)
        self.host = settings.sip.host or settings.server.host
        self.media = SipMediaSettings(
            media_timeout_s=settings.sip.media_timeout_s,
            jitter_frames=settings.sip.jitter_frames,
            max_output_audio_s=settings.webrtc.max_output_audio_s,
        )
        self.pending: dict[str, PendingCall] = {}
        self.accepted: dict[str, SipCall | RelayedSipCall] = {}
        self.dialogs: dict[str, tuple[IncomingCall, SipUAS]] = {}
        """``rtc_…`` id of each accepted call → its dialog and the UAS it arrived on."""
        self.transfers: dict[str, str] = {}
        """SIP Call-ID of each call with a REFER in progress → its target URI."""
        self.uas: list[SipUAS] = []
        self.dropped_sources = 0
        self._deliveries: set[asyncio.Task[int]] = set()
        self.digest = (DigestGuard(settings.sip.digest_username, settings.sip.digest_password)
                       if settings.sip.digest_username and settings.sip.digest_password else None)
        self._http = httpx.AsyncClient(follow_redirects=False)

    @property
    def port(self) -> int:
        return self.settings.sip.port

    async def start(self) -> None:
        """Listen on UDP and TCP (``sip_host``:``sip_port``), and TLS on ``sip_tls_port``."""
        address = (self.host, self.settings.sip.port)
        transports: list[SipTransport] = [UdpTransport(local_addr=address),
                                          TcpSipTransport(local_addr=address)]
        if self.settings.sip.tls_port:
            context = tls_context(self.settings.sip.tls_certfile, self.settings.sip.tls_keyfile)
            tls_address = (self.host, self.settings.sip.tls_port)
            transports.append(TlsTransport(local_addr=tls_address, context=context))
        for transport in transports:
            uas = SipUAS(transport, user_agent="rtgate", uac=SipUAC(transport))
            uas.on_invite = lambda call, uas=uas: self._on_invite(uas, call)
            uas.on_cancel = self._on_cancel
            uas.on_bye = self._on_bye
            uas.on_reinvite = self._on_reinvite
            uas.on_ack_timeout = self._on_ack_timeout
            uas.on_transfer_progress = self._on_transfer_progress
            await uas.start()
            # Every message passes the source check first; a handler's error answers 500
            # instead of leaving the peer retransmitting.
            transport.on_message = self._guard(uas, transport)
            self.uas.append(uas)
        tls = f", TLS on {self.settings.sip.tls_port}" if self.settings.sip.tls_port else ""
        log.info("SIP listening on %s:%d (UDP, TCP%s); allowed sources: %s", self.host,
                 self.settings.sip.port, tls, ", ".join(self.settings.sip.allowed_sources) or "none")

    def _guard(self, uas: SipUAS, transport: SipTransport) -> Any:
        handler = transport.on_message

        def on_message(msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
            if not source_allowed(addr[0], self.networks):
                self.dropped_sources += 1
                if self.dropped_sources in (1, 100, 10_000):
                    log.warning("SIP from %s dropped: not in sip_allowed_sources (%d so far)",
                                addr[0], self.dropped_sources)
                return
            if (self.digest is not None and isinstance(msg, SipRequest) and msg.method == "INVITE"
                    and "tag=" not in (msg.get_header("to") or "")
                    and not self.digest.allows(msg)):
                # A new call without valid credentials: challenge it (in-dialog requests
                # are bound to the dialog's tags, and CANCEL cannot be challenged).
                with contextlib.suppress(Exception):
                    uas._send_error(msg, 401, "Unauthorized",
                                    extra_headers={"WWW-Authenticate": self.digest.challenge()})
                return
            if isinstance(msg, SipResponse) and msg.cseq is not None and msg.cseq.method == "REFER" \
                    and msg.status_code >= 300:
                self._on_transfer_progress(msg.call_id or "", msg.status_code, msg.reason_phrase)
            try:
                assert handler is not None
                handler(msg, addr)
            except Exception as exc:
                if isinstance(msg, SipRequest) and msg.method != "ACK":
                    # aiosipua raises on an unparseable SDP body; say so to the peer.
                    bad_sdp = msg.method == "INVITE" and isinstance(exc, ValueError | IndexError)
                    with contextlib.suppress(Exception):
                        uas._send_error(msg, 400 if bad_sdp else 500,
                                        "Bad Request (invalid SDP)" if bad_sdp else "Server Internal Error")
                log.info("SIP %s from %s failed: %s", getattr(msg, "method", "response"),
                         addr[0], type(exc).__name__)

        return on_message

    # ------------------------------------------------------------------ INVITE

    def _on_invite(self, uas: SipUAS, incoming: IncomingCall) -> None:
        problem = offer_problem(incoming.sdp_offer)
        media = incoming.sdp_offer.rtp_address if incoming.sdp_offer is not None else None
        if problem is None and media is not None and media[0] != incoming.source_addr[0] \
                and not source_allowed(media[0], self.networks):
            # RTP would go to (and be taken from) a host that is not a trusted peer.
            problem = f"media address {media[0]} is neither the caller nor an allowed source"
        if problem is not None:
            log.info("SIP INVITE %s refused (488): %s", incoming.call_id, problem)
            self._forget(uas, incoming)
            incoming.reject(488, "Not Acceptable Here")
            return
        state = self.state
        # Ringing calls hold no slot yet, but each may be accepted: count them as taken.
        if state.host.check(what="calls", ringing=len(self.pending)) is not None:
            self._forget(uas, incoming)
            incoming.reject(503, "Service Unavailable")
            return
        pending = PendingCall(new_call_id(state.node), incoming, uas)
        self.pending[pending.call_id] = pending
        incoming.ringing()
        pending.task = asyncio.get_running_loop().create_task(
            self._await_decision(pending), name=f"{pending.call_id}:pending")
        log.info("SIP call %s ringing (Call-ID %s from %s)", pending.call_id, incoming.call_id,
                 incoming.source_addr[0])

    def _forget(self, uas: SipUAS, incoming: IncomingCall) -> None:
        uas._calls.pop(incoming.call_id, None)

    async def _await_decision(self, pending: PendingCall) -> None:
        settings = self.settings
        deadline = pending.created + settings.sip.answer_timeout_s
        event_id = f"evt_{secrets.token_hex(12)}"
        event = {
            "object": "event",
            "id": event_id,
            "type": "realtime.call.incoming",
            "created_at": int(time.time()),
            "data": {"call_id": pending.call_id, "sip_headers": sip_headers(pending.incoming.invite),
                     "sip_media_security": "rtp"},
        }
        delivery: asyncio.Task[int] | None = None
        if settings.webhooks.urls and settings.webhooks.secret:
            delivery = asyncio.get_running_loop().create_task(deliver(
                self._http, settings.webhooks.urls, event_id, orjson.dumps(event),
                settings.webhooks.secret, deadline=deadline, settled=pending.decided.is_set))
            self._deliveries.add(delivery)
            delivery.add_done_callback(self._deliveries.discard)
        else:
            log.warning("SIP call %s: no webhook_urls/webhook_secret configured; nobody is told "
                        "of the call", pending.call_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await pending.decided.wait()
        if pending.decided.is_set():
            return  # the delivery stops retrying by itself (settled)
        if delivery is not None:
            # Past the deadline it makes no new attempt; an attempt under way is bounded by it.
            pending.delivered = await delivery
        if not pending.decided.is_set() and self.pending.pop(pending.call_id, None) is not None:
            status = 408 if pending.delivered else 480
            log.info("SIP call %s declined (%d): not accepted within %g s", pending.call_id, status,
                     settings.sip.answer_timeout_s)
            self._forget(pending.uas, pending.incoming)
            pending.incoming.reject(status)

    def decide(self, call_id: str) -> PendingCall | None:
        """Take the pending call ``call_id`` for an accept or reject (``None``: no such call)."""
        pending = self.pending.pop(call_id, None)
        if pending is not None:
            pending.decided.set()
        return pending

    def reject(self, pending: PendingCall, status_code: int) -> None:
        self._forget(pending.uas, pending.incoming)
        pending.incoming.reject(status_code)
        log.info("SIP call %s rejected (%d)", pending.call_id, status_code)

    # ------------------------------------------------------------------ in-dialog

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        for call_id, pending in list(self.pending.items()):
            if pending.sip_call_id == request.call_id:
                self.pending.pop(call_id, None)
                pending.decided.set()
                log.info("SIP call %s cancelled by the caller", call_id)

    def _on_bye(self, incoming: IncomingCall, request: SipRequest) -> None:
        call = self.accepted.get(incoming.call_id)
        if call is not None:
            call.request_close("the caller hung up (BYE)", bye=False)

    def _on_reinvite(self, incoming: IncomingCall) -> None:
        """A re-INVITE (session refresh, new media address): answered with the same
        session, following a changed RTP address when it stays on an allowed host."""
        call = self.accepted.get(incoming.call_id)
        offer = incoming.sdp_offer
        if call is None or incoming.sdp_answer is None:
            incoming.reject(481, "Call/Transaction Does Not Exist")
            return
        if offer is not None:
            problem = offer_problem(offer)
            if problem is not None:
                log.info("SIP call %s: re-INVITE refused (488): %s", call.id, problem)
                incoming.reject(488, "Not Acceptable Here")
                incoming.dialog.confirm()  # a failed re-INVITE leaves the call as it was
                return
            address = offer.rtp_address
            if address is not None and source_allowed(address[0], self.networks):
                call.rtp.allowed_hosts = call.rtp.allowed_hosts | {address[0]}
                call.rtp.update_remote(address)
        incoming.accept(incoming.sdp_answer)

    def _on_ack_timeout(self, incoming: IncomingCall) -> None:
        call = self.accepted.get(incoming.call_id)
        if call is not None:
            call.request_close("the caller never acknowledged the 200 OK", bye=False)

    def refer(self, call: SipCall | RelayedSipCall, incoming: IncomingCall, uas: SipUAS,
              target_uri: str) -> None:
        """Ask the caller to call ``target_uri`` (blind transfer, RFC 3515)."""
        assert uas.uac is not None
        uas.uac.send_refer(incoming.dialog, target_uri, incoming.source_addr)
        self.transfers[incoming.call_id] = target_uri
        log.info("SIP call %s: REFER sent", call.id)

    def _on_transfer_progress(self, sip_call_id: str, status: int, reason: str) -> None:
        """The outcome of a REFER (RFC 3515): the final status in the caller's NOTIFY
        (``message/sipfrag``), or the REFER's own error response. Success ends the call
        (BYE: the caller now talks to the target); failure is reported on the sidebands as
        an ``error`` ``transfer_failed`` and the call goes on. Provisional statuses
        (``100 Trying``, ``180 Ringing``) are progress only."""
        call = self.accepted.get(sip_call_id)
        target = self.transfers.get(sip_call_id)
        if call is None or target is None or status < 200:
            return
        del self.transfers[sip_call_id]
        if status < 300:
            log.info("SIP call %s: transferred (%d %s)", call.id, status, reason)
            call.request_close(f"transferred to the REFER target ({status} {reason})")
            return
        log.info("SIP call %s: transfer failed (%d %s)", call.id, status, reason)
        call.report(RealtimeError(
            f"The transfer to '{echo(target)}' failed: the caller's side answered SIP {status} "
            f"{echo(reason)}. The call goes on; refer again or hang up.", "transfer_failed",
            "target_uri"))

    async def aclose(self) -> None:
        for pending in list(self.pending.values()):
            self.decide(pending.call_id)
            with contextlib.suppress(Exception):
                self.reject(pending, 503)
        for task in list(self._deliveries):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for uas in self.uas:
            with contextlib.suppress(Exception):
                await uas.stop()
        await self._http.aclose()

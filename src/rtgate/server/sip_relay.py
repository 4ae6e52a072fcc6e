"""Accepting a SIP call whose model is relayed to a cloud upstream (docs/sip.md, Relayed models).

The upstream session is opened and configured *before* the caller is answered, so every
way it can fail is the app's answer to ``accept`` and the call stays pending (the app may
accept again, or reject; otherwise it is declined when its answer time runs out):

* the upstream cannot be opened — ``502`` with the relay's code (``upstream_unavailable``,
  ``upstream_rejected``, ``upstream_misconfigured``; docs/relay.md) and its message;
* the upstream answers the configuration with an ``error`` — ``400`` with that error's
  ``code``, ``message`` and ``param`` as the upstream sent them;
* no ``session.updated`` within ``relay_answer_deadline_s`` — ``504 upstream_timeout``.

Then the call is decided, its RTP port opened, the INVITE answered ``200 OK`` and the
bridge (:class:`~rtgate.transport.sip_relay.RelayedSipCall`) started.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from websockets.exceptions import ConnectionClosed

from ..protocol.errors import SERVER_ERROR, RealtimeError
from ..protocol.session import SessionConfig
from ..relay.upstream import UpstreamUnavailable, open_upstream
from ..transport.sip_relay import (
    RawRTPSession,
    RelayedSipCall,
    UpstreamRefused,
    configure_upstream,
    g711_format,
)
from .auth import extract_credential
from .client_secrets import authenticate, error_response
from .config import UpstreamConfig
from .drain import shutting_down
from .host import Refusal, Ticket
from .keys import account_of
from .relay_wiring import relay_limits
from .sip import PendingCall, SipEndpoint, answer_sdp
from .sip_media import AcceptedCall, not_found, open_call_media
from .state import ServerState

log = logging.getLogger("rtgate.sip")


def upstream_session(raw: dict[str, Any], audio_format: str) -> dict[str, Any]:
    """The accepted configuration as the upstream's ``session.update`` session: the app's
    body without ``model`` (the upstream URL names it), audio in the call's G.711 law."""
    session = {k: copy.deepcopy(v) for k, v in raw.items() if k != "model"}
    session.setdefault("type", "realtime")
    audio = session.get("audio")
    audio = audio if isinstance(audio, dict) else {}
    for direction in ("input", "output"):
        if session["type"] == "transcription" and direction == "output":
            continue
        part = audio.get(direction)
        part = part if isinstance(part, dict) else {}
        part["format"] = {"type": audio_format}
        audio[direction] = part
    session["audio"] = audio
    return session


async def accept_relayed(request: Request, endpoint: SipEndpoint, pending: PendingCall,
                         raw: dict[str, Any], config: SessionConfig, upstream: UpstreamConfig,
                         model: str) -> Response:
    """``accept`` for a relayed model; see the module docstring."""
    state: ServerState = request.app.state.rtgate
    settings = state.settings
    refusal = state.host.check(what="calls")  # the call stays pending
    if refusal is not None:
        return refusal.response()
    incoming = pending.incoming
    offer = incoming.sdp_offer
    assert offer is not None and offer.rtp_address is not None
    _, payload_type, _ = answer_sdp(offer, "127.0.0.1", 9)  # only the codec choice is used
    audio_format = g711_format(payload_type)
    limits = relay_limits(settings)
    transcription = config.type == "transcription"
    try:
        conn = await open_upstream(upstream, model, limits,
                                   intent="transcription" if transcription else None)
    except UpstreamUnavailable as exc:
        log.warning("SIP call %s: relay upstream '%s' unavailable (%s)", pending.call_id,
                    upstream.name, exc.code)
        return error_response(502, RealtimeError(exc.message, exc.code, type=SERVER_ERROR))
    try:
        session = await configure_upstream(conn, upstream_session(raw, audio_format),
                                           limits.answer_deadline_s)
    except UpstreamRefused as exc:
        await conn.close(1000, "call not accepted")
        error = exc.error
        return error_response(400, RealtimeError(
            str(error.get("message") or "The upstream refused the session configuration."),
            str(error.get("code") or "invalid_value"),
            error.get("param") if isinstance(error.get("param"), str) else None,
            type=str(error.get("type") or "invalid_request_error")))
    except (TimeoutError, ConnectionClosed) as exc:
        await conn.close(1000, "call not accepted")
        lost = isinstance(exc, ConnectionClosed)
        return error_response(502 if lost else 504, RealtimeError(
            f"The relay upstream '{upstream.name}' "
            + ("closed the connection while the session was configured." if lost else
               f"did not confirm the session configuration within {limits.answer_deadline_s:g} s."),
            "upstream_connection_lost" if lost else "upstream_timeout", type=SERVER_ERROR))
    if endpoint.decide(pending.call_id) is None:  # it timed out or was cancelled meanwhile
        await conn.close(1000, "call not accepted")
        return not_found(pending.call_id, "pending SIP")
    account = account_of(authenticate(request, allow_ephemeral=False),
                         extract_credential(request.headers, request.query_params, []))
    ticket = await state.host.admit(account, what="calls")
    if isinstance(ticket, Refusal):
        await conn.close(1000, "call not accepted")
        endpoint.reject(pending, 503)
        return ticket.response()
    try:
        await _start(state, endpoint, pending, conn, upstream, session, audio_format, payload_type,
                     ticket)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await conn.close(1000, "call not accepted")
        ticket.release_soon()
        endpoint.reject(pending, 500)
        log.warning("SIP call %s could not start: %s", pending.call_id, exc)
        return error_response(500, RealtimeError(
            f"The call's media could not be set up: {type(exc).__name__}.", "server_error",
            type="server_error"))
    log.info("SIP call %s accepted (model=%s, relayed to '%s', %s)", pending.call_id, model,
             upstream.name, audio_format)
    return Response(status_code=200)


async def _start(state: ServerState, endpoint: SipEndpoint, pending: PendingCall, conn: Any,
                 upstream: UpstreamConfig, session: dict[str, Any], audio_format: str,
                 payload_type: int, ticket: Ticket) -> None:
    settings = state.settings
    incoming = pending.incoming
    # plc off: the payloads go upstream as they came; a lost packet is filled with silence.
    media = await open_call_media(settings, endpoint, incoming, RawRTPSession, plc=False)
    assert media.payload_type == payload_type  # the codec the upstream session was set up for
    accepted = AcceptedCall(state, endpoint, pending, media, ticket)
    call = RelayedSipCall(pending.call_id, upstream=conn, upstream_name=upstream.name,
                          upstream_session=session, audio_format=audio_format, rtp=media.rtp,
                          settings=endpoint.media, send_deadline_s=settings.outbound.send_deadline_s,
                          send_bye=accepted.send_bye, on_closed=accepted.on_closed)
    accepted.answer(call, lambda: call.request_close(shutting_down().message))
    await call.start()

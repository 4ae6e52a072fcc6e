"""Call control of SIP calls: ``POST {/openai/v1,/v1,/openai}/realtime/calls/{call_id}/…``.

* ``accept`` — body: a realtime session configuration, as the SDK's
  ``client.realtime.calls.accept(call_id, type="realtime", …)`` sends it. The call gets its
  session and RTP, the caller ``200 OK`` with the SDP answer; ``200``, empty body.
* ``reject`` — body ``{"status_code": 4xx-6xx}`` (default 603 Decline); ``200``.
* ``refer`` — body ``{"target_uri": "sip:…" | "tel:…"}``: SIP REFER to the caller; ``200``.
* ``hangup`` is the WebRTC calls' route (server/calls.py): the call sends BYE.

Errors use the cloud's REST body ``{"error": {"message", "type", "param", "code"}}``:
``401`` for a missing or wrong key (ephemeral keys are refused: the app's backend
controls calls), ``404 call_not_found`` for no such pending (accept/reject) or live
(refer) call — also once it was accepted, rejected, cancelled or timed out — and ``400``
for a bad body. A call held by another process of the deployment is forwarded to it
(server/forward.py), as for hangup.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..pipeline.responder import Pipeline
from ..protocol.errors import RealtimeError, echo
from ..protocol.session import SessionConfig, validate_session
from ..transport.connection import OutputHook, SessionRunner
from ..transport.sip_call import GuardedRTPSession, SipCall
from ..transport.sip_relay import RelayedSipCall
from ..transport.webrtc import CallChannel
from .auth import extract_credential
from .call_registry import call_owner
from .calls import PREFIXES
from .client_secrets import RestError, authenticate, error_response, json_object, read_body
from .drain import shutting_down
from .forward import forward_request, owner_gone, target
from .host import Refusal, Ticket
from .keys import account_of
from .node import FORWARDED_HEADER
from .sip import PendingCall, SipEndpoint
from .sip_media import AcceptedCall, not_found, open_call_media
from .sip_relay import accept_relayed
from .state import ServerState

log = logging.getLogger("rtgate.sip")

MAX_BODY_BYTES = 256 * 1024
REFER_SCHEMES = ("sip:", "sips:", "tel:")


async def _control(request: Request, *, pending: bool) -> tuple[Any, Any, bytes] | Response:
    """Authenticate, read the body and find the call: ``(endpoint, call, body)``, or the
    response to send (an error, or the owner's answer to a forwarded request)."""
    app = request.app
    call_id = request.path_params["call_id"]
    try:
        authenticate(request, allow_ephemeral=False)
        body = await read_body(request, MAX_BODY_BYTES)
    except RestError as exc:
        return error_response(exc.status, exc.error)
    endpoint: SipEndpoint | None = getattr(app.state, "sip", None)
    call: Any = None
    if endpoint is not None:
        call = endpoint.pending.get(call_id) if pending else app.state.rtgate.calls.get(call_id)
    if call is None or (not pending and not isinstance(call, SipCall | RelayedSipCall)):
        node = app.state.rtgate.node
        elsewhere, url = await target(node, call_owner(call_id), FORWARDED_HEADER in request.headers)
        credential = extract_credential(request.headers, request.query_params, [])
        if elsewhere and url is not None and credential is not None:
            return await forward_request(request, url, credential, node, body=body)
        if elsewhere:
            return error_response(404, owner_gone(call_id))
        return not_found(call_id, "pending SIP" if pending else "live SIP")
    return endpoint, call, body


async def accept_call(request: Request) -> Response:
    found = await _control(request, pending=True)
    if isinstance(found, Response):
        return found
    endpoint, pending, body = found
    assert isinstance(endpoint, SipEndpoint) and isinstance(pending, PendingCall)
    state: ServerState = request.app.state.rtgate
    try:
        raw = json_object(body)
        config = validate_session(raw, "session")
        model = getattr(config, "model", None) or "gpt-realtime"
        upstream = state.router.upstream_for(model)
        if upstream is not None:
            return await accept_relayed(request, endpoint, pending, raw, config, upstream, model)
        pipeline, model = _route(state, config)
        refusal = state.host.check(pipeline, what="calls")  # the call stays pending
        if refusal is not None:
            return refusal.response()
    except RealtimeError as error:
        return error_response(400, error)
    if endpoint.decide(pending.call_id) is None:  # it timed out or was cancelled meanwhile
        return not_found(pending.call_id, "pending SIP")
    account = account_of(authenticate(request, allow_ephemeral=False),
                         extract_credential(request.headers, request.query_params, []))
    ticket = await state.host.admit(account, pipeline, what="calls")
    if isinstance(ticket, Refusal):
        endpoint.reject(pending, 503)
        return ticket.response()
    try:
        await _start_call(state, endpoint, pending, config, pipeline, model, ticket)
    except Exception as exc:
        ticket.release_soon()  # a no-op when the call's own ending released it
        if not isinstance(exc, _EndedAfterAnswer):
            endpoint.reject(pending, 500)
        log.warning("SIP call %s could not start: %s", pending.call_id, exc)
        return error_response(500, RealtimeError(
            f"The call's media could not be set up: {type(exc).__name__}.", "server_error",
            type="server_error"))
    log.info("SIP call %s accepted (model=%s, profile=%s)", pending.call_id, model, pipeline.name)
    return Response(status_code=200)


def _route(state: Any, config: SessionConfig) -> tuple[Any, str]:
    model = getattr(config, "model", None) or "gpt-realtime"
    pipeline = state.router.resolve(model)
    if pipeline is None:
        raise RealtimeError(
            f"Invalid model: '{model}'. This rtgate server routes official realtime model "
            "names and the names in its profile configuration.", "invalid_model", "model")
    return pipeline, model


class _EndedAfterAnswer(Exception):
    """The 200 OK went out but the session could not start: the call was ended (BYE)."""


async def _start_call(state: ServerState, endpoint: SipEndpoint, pending: PendingCall,
                      config: SessionConfig, pipeline: Pipeline, model: str, ticket: Ticket) -> None:
    settings = state.settings
    incoming = pending.incoming
    media = await open_call_media(settings, endpoint, incoming, GuardedRTPSession, plc=True)
    accepted = AcceptedCall(state, endpoint, pending, media, ticket)
    transcription = config.type == "transcription"

    def runner_factory(channel: CallChannel, output_hook: OutputHook) -> SessionRunner:
        return state.host.runner(ticket, channel, pipeline, model=model, config=config,
                                 transcription=transcription, plays_audio=True,
                                 output_hook=output_hook)

    call = SipCall(pending.call_id, runner_factory, rtp=media.rtp, settings=endpoint.media,
                   send_deadline_s=settings.outbound.send_deadline_s, send_bye=accepted.send_bye,
                   on_closed=accepted.on_closed)
    accepted.answer(call, lambda: call.runner.shut_down(shutting_down().message))
    try:
        await call.start()
    except Exception as exc:
        await call.aclose("the session could not start")
        raise _EndedAfterAnswer(str(exc)) from exc


async def reject_call(request: Request) -> Response:
    found = await _control(request, pending=True)
    if isinstance(found, Response):
        return found
    endpoint, pending, body = found
    try:
        raw = json_object(body)
        status = raw.get("status_code", 603)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 699:
            raise RealtimeError(
                f"Invalid 'status_code': {echo(str(status))}. Expected a SIP final status code "
                "from 400 to 699 (default 603).", "invalid_value", "status_code")
    except RealtimeError as error:
        return error_response(400, error)
    if endpoint.decide(pending.call_id) is None:
        return not_found(pending.call_id, "pending SIP")
    endpoint.reject(pending, status)
    return Response(status_code=200)


async def refer_call(request: Request) -> Response:
    found = await _control(request, pending=False)
    if isinstance(found, Response):
        return found
    endpoint, call, body = found
    try:
        raw = json_object(body)
        target_uri = raw.get("target_uri")
        if target_uri is None:
            raise RealtimeError("Missing required parameter: 'target_uri'.",
                                "missing_required_parameter", "target_uri")
        if (not isinstance(target_uri, str) or not target_uri.lower().startswith(REFER_SCHEMES)
                or any(c in target_uri for c in "\r\n<>") or len(target_uri) > 512):
            raise RealtimeError(
                "Invalid 'target_uri': expected a 'sip:', 'sips:' or 'tel:' URI such as "
                "'tel:+14155550123' or 'sip:agent@example.com'.", "invalid_value", "target_uri")
    except RealtimeError as error:
        return error_response(400, error)
    dialog = endpoint.dialogs.get(call.id)
    if dialog is None or call.closed.is_set():
        return not_found(call.id, "live SIP")
    incoming, uas = dialog
    with contextlib.suppress(Exception):
        endpoint.refer(call, incoming, uas, target_uri)
        return Response(status_code=200)
    return error_response(409, RealtimeError("The call's dialog is no longer established.",
                                             "call_not_found", "call_id"))


ROUTES = [
    route
    for prefix in PREFIXES
    for route in (
        Route(f"{prefix}/realtime/calls/{{call_id}}/accept", accept_call, methods=["POST"]),
        Route(f"{prefix}/realtime/calls/{{call_id}}/reject", reject_call, methods=["POST"]),
        Route(f"{prefix}/realtime/calls/{{call_id}}/refer", refer_call, methods=["POST"]),
    )
]

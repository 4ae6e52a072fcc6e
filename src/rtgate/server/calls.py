"""``POST …/realtime/calls`` (WebRTC SDP exchange), hangup and sideband control
(docs/protocol.md, WebRTC calls and the sideband).

* ``POST {/openai/v1,/v1,/openai}/realtime/calls`` — either a raw ``application/sdp`` offer
  (usually with an ephemeral key, whose bound session starts the call) or
  ``multipart/form-data`` with an ``sdp`` part (with or without a part content type, as
  browsers' ``FormData`` send it) and an optional ``session`` JSON part. Answers ``201``
  with the SDP answer (``Content-Type: application/sdp``) and
  ``Location: /v1/realtime/calls/rtc_…``.
* ``POST …/realtime/calls/{call_id}/hangup`` — ends the call; ``200``, empty body.
* ``GET …/realtime?call_id=rtc_…`` (WebSocket, standard key) — a sideband socket: it opens
  with ``session.created`` (the call's current session), then gets every event of the call
  and may send client events (``session.update``,
  ``response.create``, tool outputs), so a backend keeps tools and secrets off the browser.

Errors use the cloud's REST body ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket

from .. import extras
from ..asgi.channel import StarletteChannel
from ..protocol.errors import RealtimeError, echo
from ..protocol.session import SessionConfig, validate_session
from ..transport.connection import OutputHook, SessionRunner
from ..transport.ice_ports import PortRangeExhausted
from .auth import Grant, extract_credential
from .call_registry import CallRegistry, call_owner, new_call_id, owners
from .client_secrets import RestError, authenticate, error_response, read_body
from .drain import shutting_down
from .forward import forward_request, forward_socket, owner_gone, target
from .host import Refusal
from .keys import account_of
from .node import FORWARDED_HEADER
from .refusal import refuse as _refuse
from .scope import may_hang_up, model_refusal
from .settings import Settings
from .state import ServerState

if TYPE_CHECKING:  # the call transports need the webrtc / sip extras (rtgate.extras)
    from ..transport.webrtc import CallChannel, WebRTCCall

log = logging.getLogger("rtgate.calls")


PREFIXES = ("/openai/v1", "/v1", "/openai")
MAX_SDP_BYTES = 64 * 1024
"""Largest SDP offer accepted, in bytes."""


def _missing_webrtc() -> RealtimeError:
    """Why a server without the webrtc extra refuses call offers (it started without them)."""
    missing = extras.MissingExtra("webrtc", "WebRTC (…/realtime/calls)", extras.missing("webrtc"))
    return RealtimeError(f"This rtgate server takes no WebRTC calls. {missing}.",
                         "webrtc_not_installed", type="server_error")


def _sdp_from_multipart(content_type: str, body: bytes) -> tuple[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise RealtimeError("The multipart body could not be parsed (check the boundary).",
                            "invalid_request", None)
    sdp: str | None = None
    session: Any = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        if name == "sdp":
            sdp = payload.decode("utf-8", "replace")
        elif name == "session":
            try:
                session = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise RealtimeError("The 'session' part is not valid JSON.", "invalid_json",
                                    "session") from None
    if sdp is None:
        raise RealtimeError("Missing required part 'sdp' (the SDP offer).",
                            "missing_required_parameter", "sdp")
    return sdp, session


def _check_sdp(sdp: str) -> None:
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("m=") for line in lines):
        raise RealtimeError(
            "Invalid SDP offer: expected an SDP session description starting with 'v=0' with "
            "at least one media section ('m=audio' for the microphone, 'm=application' for "
            "the events data channel), as RTCPeerConnection.createOffer() produces.",
            "invalid_sdp", "sdp")


async def _parse_offer(request: Request, grant: Grant) -> tuple[str, SessionConfig | None]:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    body = await read_body(request, MAX_SDP_BYTES + 64 * 1024)
    if media_type == "application/sdp":
        sdp, session = body.decode("utf-8", "replace"), grant.session
    elif media_type == "multipart/form-data":
        try:
            sdp, session = _sdp_from_multipart(content_type, body)
        except RealtimeError as error:
            raise RestError(400, error) from None
        if session is None:
            session = grant.session
    else:
        raise RestError(415, RealtimeError(
            f"Unsupported Content-Type {media_type or '(none)'!r}: send the SDP offer as "
            "'application/sdp', or 'multipart/form-data' with an 'sdp' part and an optional "
            "'session' part.", "unsupported_media_type"))
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise RestError(400, RealtimeError(f"The SDP offer is larger than {MAX_SDP_BYTES} bytes.",
                                           "invalid_sdp", "sdp"))
    try:
        _check_sdp(sdp)
        config = validate_session(session) if session is not None else None
    except RealtimeError as error:
        raise RestError(400, error) from None
    return sdp, config


async def create_call(request: Request) -> Response:
    state: ServerState = request.app.state.rtgate
    registry = state.calls
    settings: Settings = state.settings
    try:
        grant = authenticate(request, allow_ephemeral=True)
        if registry.webrtc is None:
            raise RestError(501, _missing_webrtc())
        sdp, config = await _parse_offer(request, grant)
        requested = getattr(config, "model", None) or request.query_params.get("model")
        refusal = model_refusal(grant, requested, state.router, param="session.model")
        if refusal is not None:  # an ephemeral key reaches its own model only
            raise RestError(400, refusal)
        model = (getattr(config, "model", None) or request.query_params.get("model")
                 or "gpt-realtime")
        pipeline = state.router.resolve(model)
        upstream = state.router.upstream_for(model) if pipeline is None else None
        if upstream is not None:
            raise RestError(400, RealtimeError(
                f"The model '{model}' is relayed to the upstream '{upstream.name}', and rtgate "
                "does not relay WebRTC calls. Connect to rtgate over WebSocket "
                "(/v1/realtime?model=...) instead, or send the offer to the upstream's own "
                "WebRTC endpoint (/realtime/calls) with a key it issued.",
                "unsupported_for_relayed_model", "session.model"))
        if pipeline is None:
            raise RestError(400, RealtimeError(
                f"Invalid model: '{model}'. This rtgate server routes official realtime model "
                "names and the names in its profile configuration.", "invalid_model",
                "session.model"))
    except RestError as exc:
        return error_response(exc.status, exc.error)
    account = account_of(grant, extract_credential(request.headers, request.query_params, []))
    ticket = await state.host.admit(account, pipeline, what="calls")
    if isinstance(ticket, Refusal):
        return ticket.response()

    call_id = new_call_id(state.node)
    transcription = config is not None and config.type == "transcription"

    def runner_factory(channel: CallChannel, output_hook: OutputHook) -> SessionRunner:
        return state.host.runner(ticket, channel, pipeline, model=model, config=config,
                                 transcription=transcription, plays_audio=True,
                                 output_hook=output_hook)

    def on_closed(call: WebRTCCall) -> None:
        unregister()
        registry.calls.pop(call.id, None)
        ticket.release_soon()

    from ..transport.webrtc import WebRTCCall

    call = WebRTCCall(call_id, runner_factory, settings=registry.webrtc,
                      send_deadline_s=settings.outbound.send_deadline_s, on_closed=on_closed)
    registry.calls[call_id] = call
    unregister = state.drain.register(lambda: call.runner.shut_down(shutting_down().message))
    owners[call] = grant.key_id
    try:
        answer = await call.answer(sdp)
    except PortRangeExhausted as exc:
        await call.aclose("no free UDP port for the call")
        log.warning("call %s refused: %s", call_id, exc.strerror)
        return error_response(503, RealtimeError(
            f"This server has no free UDP port for the call's media: {exc.strerror}; try "
            "again later.", "udp_ports_exhausted", type="server_error"))
    except Exception as exc:
        await call.aclose("the SDP offer could not be applied")
        return error_response(400, RealtimeError(
            f"Invalid SDP offer: {exc or type(exc).__name__}. Send the offer produced by "
            "RTCPeerConnection.createOffer(), with an audio track and/or a data channel.",
            "invalid_sdp", "sdp"))
    log.info("call %s started (model=%s, profile=%s)", call_id, model, pipeline.name)
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call_id}"})


async def hangup_call(request: Request) -> Response:
    registry: CallRegistry = request.app.state.rtgate.calls
    try:
        grant = authenticate(request, allow_ephemeral=True)
    except RestError as exc:
        return error_response(exc.status, exc.error)
    call = registry.get(request.path_params["call_id"])
    if call is None:
        elsewhere, url = await target(request.app.state.rtgate.node,
                                      call_owner(request.path_params["call_id"]),
                                      FORWARDED_HEADER in request.headers)
        credential = extract_credential(request.headers, request.query_params, [])
        if elsewhere and url is not None and credential is not None:
            return await forward_request(request, url, credential, request.app.state.rtgate.node)
        if elsewhere:
            return error_response(404, owner_gone(request.path_params["call_id"]))
        return error_response(404, RealtimeError(
            f"No live call with id '{echo(request.path_params['call_id'])}'.", "call_not_found",
            "call_id"))
    if not may_hang_up(grant, owners.get(call)):
        return error_response(403, RealtimeError(
            "This ephemeral key did not start the call, so it cannot hang it up; use the key "
            "that started it or a standard API key.", "invalid_api_key", "call_id"))
    await call.aclose("hangup requested")
    return Response(status_code=200)


async def playground(request: Request) -> Response:
    """The browser playground (static HTML, no build step); keys are minted by the page."""
    from importlib.resources import files

    page = files("rtgate.server").joinpath("static/playground.html").read_text("utf-8")
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})


ROUTES = [
    Route("/", playground, methods=["GET"]),
    *(
        route
        for prefix in PREFIXES
        for route in (
            Route(f"{prefix}/realtime/calls", create_call, methods=["POST"]),
            Route(f"{prefix}/realtime/calls/{{call_id}}/hangup", hangup_call, methods=["POST"]),
        )
    ),
]


# --------------------------------------------------------------------------- sideband


async def sideband_endpoint(ws: WebSocket, grant: Grant, call_id: str) -> None:
    """Attach an accepted, authenticated WebSocket to the live call ``call_id``."""
    registry: CallRegistry | None = ws.app.state.rtgate.calls
    if grant.ephemeral:
        await _refuse(ws, RealtimeError(
            "A sideband connection needs a standard API key, not an ephemeral key.",
            "invalid_api_key"), 3000)
        return
    call = registry.get(call_id) if registry is not None else None
    if call is None:
        node = ws.app.state.rtgate.node
        elsewhere, url = await target(node, call_owner(call_id), FORWARDED_HEADER in ws.headers)
        credential = extract_credential(ws.headers, ws.query_params,
                                        list(ws.scope.get("subprotocols") or []))
        if elsewhere and url is not None and credential is not None:
            await forward_socket(ws, url, credential, node)
            return
        if elsewhere:
            await _refuse(ws, owner_gone(call_id), 4000)
            return
    if call is None or call.closed.is_set():
        await _refuse(ws, RealtimeError(
            f"No live call with id '{call_id}'.", "call_not_found", "call_id"), 4000)
        return
    channel = StarletteChannel(ws)
    session = call.runner.session

    def created() -> str:
        # The sideband behaves like a session's own socket (docs/protocol.md): it opens with
        # session.created, carrying the call's session as it is now, and is sent to this
        # socket only — the data channel and other sidebands do not see it again.
        event = {"type": "session.created", "event_id": session.ids.event(),
                 "session": session.wire_session()}
        return orjson.dumps(event).decode()

    try:
        await call.channel.attach_sideband(channel, created)
    except Exception:
        log.info("call %s: sideband went away while attaching", call_id)
        return
    log.info("call %s: sideband attached", call_id)
    try:
        while not call.closed.is_set():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await call.runner.receive_text(message["text"])
            elif message.get("bytes") is not None:
                call.runner.receive_binary()
    finally:
        call.channel.sidebands.discard(channel)
        log.info("call %s: sideband detached", call_id)

"""The Realtime WebSocket endpoint (docs/protocol.md, Endpoints and Handshake and authentication).

The upgrade always succeeds (``101``), as on the cloud; problems with the key, the model
or the protocol are reported as the first frame — an ``error`` event — followed by a
close: ``3000`` for authentication, ``4000`` for the request's shape, with the reason
``"<error.type>.<error.code>"``. Keys, and query strings or subprotocols that carry keys,
are never logged.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..asgi.channel import StarletteChannel
from ..protocol.dialects import PREVIEW_BETA_SUBPROTOCOL
from ..protocol.errors import RealtimeError
from ..protocol.preview import PreviewState
from ..protocol.session import validate_session
from ..relay.endpoint import arm_splice, relay_endpoint
from ..transport.connection import Channel
from ..transport.preview_bridge import PreviewBridge, PreviewChannel
from .auth import extract_credential
from .calls import sideband_endpoint
from .drain import CLOSE_CODE as DRAIN_CLOSE_CODE
from .drain import shutting_down
from .forward import forward_socket, peer_with_room
from .host import Refusal
from .keys import account_of
from .node import FORWARDED_HEADER
from .refusal import refuse as _refuse
from .relay_wiring import may_splice, relay_limits
from .scope import model_refusal
from .state import ServerState
from .ws_protocol import TAP_EXTENSION, MessageTap

log = logging.getLogger("rtgate.ws")


def _is_preview(ws: WebSocket, subprotocols: list[str]) -> bool:
    beta = ws.headers.get("openai-beta", "")
    return "realtime=v1" in beta.replace(" ", "") or PREVIEW_BETA_SUBPROTOCOL in subprotocols


async def realtime_endpoint(ws: WebSocket) -> None:
    state: ServerState = ws.app.state.rtgate
    settings = state.settings
    subprotocols = list(ws.scope.get("subprotocols") or [])
    # a relayed GA session may take the raw socket
    arm_splice(ws, may_splice=may_splice(settings, state.router, preview=_is_preview(ws, subprotocols)))
    await ws.accept(subprotocol="realtime" if "realtime" in subprotocols else None)

    query = ws.query_params
    credential = extract_credential(ws.headers, query, subprotocols)
    grant = state.auth.check(credential)
    if grant is None:
        if credential is None:
            error = RealtimeError(
                "Missing bearer or basic authentication in header. Send the key as "
                "'Authorization: Bearer <key>', an 'api-key' header, or the "
                "'openai-insecure-api-key.<key>' subprotocol.",
                None,
            )
        else:
            error = RealtimeError(
                "Incorrect API key provided. Check the key configured for this rtgate server.",
                "invalid_api_key",
            )
        log.info("refused a session: %s", "missing key" if credential is None else "wrong key")
        await _refuse(ws, error, 3000)
        return

    if query.get("call_id"):
        await sideband_endpoint(ws, grant, query["call_id"])
        return

    if state.drain.draining:  # a live call's sideband (above) may still attach
        log.info("refused a session: draining")
        await _refuse(ws, shutting_down("it takes no new sessions"), DRAIN_CLOSE_CODE)
        return

    # Preview clients run the same GA session behind the bridge (transport/preview_bridge.py).
    preview = _is_preview(ws, subprotocols)

    initial = None
    if grant.session is not None:
        initial = validate_session(grant.session)
    model = query.get("model") or query.get("deployment") or (
        getattr(initial, "model", None) if initial is not None else None
    )
    transcription = query.get("intent") == "transcription" or (
        initial is not None and initial.type == "transcription"
    )
    refusal = model_refusal(grant, query.get("model") or query.get("deployment"), state.router)
    if refusal is not None:  # an ephemeral key reaches its own model only (server/scope.py)
        await _refuse(ws, refusal, 4000)
        return
    upstream = state.router.upstream_for(model) if model else None
    if upstream is not None:
        # A relayed model skips the local core entirely (relay/endpoint.py).
        ticket = await state.host.admit(account_of(grant, credential))
        if isinstance(ticket, Refusal):
            await _refuse(ws, ticket.error, ticket.close_code)
            return
        try:
            await relay_endpoint(
                ws, upstream, str(model), limits=relay_limits(settings),
                splice_enabled=settings.relay.splice,
                metrics=state.metrics.relay,
                on_drain=state.drain.register, bound_session=grant.session,
                transcription=transcription, preview=preview)
        finally:
            await ticket.release()
        return
    if transcription:
        pipeline = state.router.resolve(model) if model else state.router.default
    elif not model:
        await _refuse(
            ws,
            RealtimeError(
                "Missing required query parameter 'model' (or 'deployment'), e.g. "
                "/v1/realtime?model=gpt-realtime.",
                "missing_model",
            ),
            4000,
        )
        return
    else:
        pipeline = state.router.resolve(model)
    if pipeline is None:
        await _refuse(
            ws,
            RealtimeError(
                f"Invalid model: '{model}'. This rtgate server routes official realtime model "
                "names and the names in its profile configuration.",
                "invalid_model",
            ),
            4000,
        )
        return

    ticket = await state.host.admit(account_of(grant, credential), pipeline)
    if isinstance(ticket, Refusal):
        if ticket.forwardable and FORWARDED_HEADER not in ws.headers and credential is not None:
            peer = await peer_with_room(state.node)  # the kernel spread connections, not load
            if peer is not None:
                await forward_socket(ws, peer, credential, state.node)
                return
        await _refuse(ws, ticket.error, ticket.close_code)
        return

    # A close frame is a send: it gets the same deadline.
    channel: Channel = StarletteChannel(ws, settings.outbound.send_deadline_s)
    if preview:
        preview_state = PreviewState(transcription=transcription, client_model=model)
        channel = PreviewChannel(channel, preview_state)
    runner = state.host.runner(ticket, channel, pipeline, model=model, config=initial,
                               transcription=transcription)
    session = runner.session
    bridge = PreviewBridge(runner, channel) if isinstance(channel, PreviewChannel) else None
    handle_text = bridge.handle_text if bridge is not None else runner.handle_text

    def on_text(text: str) -> None:
        if runner.closing is None:  # as the loop below: nothing is read once closing
            handle_text(text)

    # Text messages go straight from the parser to the session while this task waits
    # below (server/ws_protocol.py, MessageTap); the loop sees the rest.
    tap: MessageTap | None = ws.scope.get("extensions", {}).get(TAP_EXTENSION)
    log.info("session %s opened (model=%s, profile=%s)", session.id, model, pipeline.name)
    unregister = state.drain.register(lambda: runner.shut_down(shutting_down().message))
    try:
        await runner.start()
        if tap is not None and settings.websocket.ws_direct_messages:
            tap.attach(on_text)
        while runner.closing is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is not None:
                handle_text(text)
            elif message.get("bytes") is not None:
                runner.receive_binary()
        if runner.closing is not None:
            await runner.wait_closed()
    except WebSocketDisconnect:
        pass
    finally:
        unregister()
        if tap is not None:
            tap.detach()
        stragglers: set[asyncio.Task[None]] = set()
        try:
            stragglers = await runner.stop(settings.shutdown.session_stop_timeout_s)
        finally:
            await ticket.release(stragglers)  # issue 17: the slot once, when the session is gone
        log.info("session %s closed", session.id)
        if bridge is not None:
            log.info("session %s: %s", session.id, bridge.summary())

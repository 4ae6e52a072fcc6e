"""Requests that another process of the deployment serves: forwarded to it.

A WebRTC call lives in the process that answered its offer. Its sideband WebSocket
(``/v1/realtime?call_id=…``) and its hangup (``POST …/calls/{id}/hangup``) may reach any
process of the deployment — another worker on the same port, another node behind the
load balancer. The call id names the owner (server/calls.py, ``new_call_id``) and
:meth:`Node.url_of` finds its internal URL; then:

* a sideband is relayed message by message to the owner's own sideband endpoint, with
  the client's credential (the owner checks it, as if the client had come straight
  there), and the owner's close code and reason are passed back to the client;
* a hangup is re-sent to the owner, and its answer (status, body) passed back.

The same relay hands a new session to another worker of this host when this worker has
no room for it (its admission would refuse it, server/admission.py) and that worker has
(:func:`peer_with_room`): the kernel spreads connections over the workers evenly, not by
their load, so without it a session could be refused while the host has room.

A forwarded request carries :data:`FORWARDED_HEADER` and is never forwarded again. When
the owner is gone (its node was killed or restarted; its membership expired) the client
gets ``call_not_found`` at once, saying so, rather than a hang; when the owner does not
answer within :data:`CONNECT_TIMEOUT_S`, the client gets ``server_error`` /
``call_owner_unreachable`` (close 1011, or HTTP 502).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from ..protocol.dialects import INSECURE_KEY_SUBPROTOCOL_PREFIX
from ..protocol.errors import RealtimeError, echo
from .auth import Credential
from .client_secrets import error_response
from .node import FORWARDED_HEADER, Node
from .refusal import refuse

log = logging.getLogger("rtgate.forward")

CONNECT_TIMEOUT_S = 5.0
"""Seconds to reach the process that holds a call."""
PEER_CHECK_TIMEOUT_S = 0.5
"""Seconds a worker of this host may take to say whether it has room for a session."""


def owner_gone(call_id: str) -> RealtimeError:
    return RealtimeError(
        f"No live call with id '{echo(call_id)}': the server that held it is no longer "
        "running (it was stopped or restarted), so the call has ended.",
        "call_not_found", "call_id")


def owner_unreachable(call_id: str) -> RealtimeError:
    return RealtimeError(
        f"The server that holds call '{echo(call_id)}' did not answer; try again.",
        "call_owner_unreachable", "call_id", type="server_error")


async def target(node: Node | None, owner: str | None, forwarded: bool) -> tuple[bool, str | None]:
    """Whether a request for a call owned by ``owner`` goes elsewhere, and where.

    ``(False, None)``: handle it here (this process is the owner, the request was already
    forwarded once, or the id names no owner). ``(True, None)``: the owner is gone.
    ``(True, url)``: forward to ``url``."""
    if node is None or owner is None or owner == node.id or forwarded:
        return False, None
    return True, await node.url_of(owner)


def _ws_url(base: str, path: str, query: str) -> str:
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}?{query}"


async def peer_with_room(node: Node | None) -> str | None:
    """The internal URL of another worker of this host that has room for a conversation
    now (its ``/readyz``), or ``None``. Peers are asked in random order, each for at most
    :data:`PEER_CHECK_TIMEOUT_S`; the answer may be stale by the time the session arrives,
    and the peer then refuses it itself."""
    if node is None:
        return None
    others = [url for node_id, url in node.peers.items() if node_id != node.id]
    random.shuffle(others)
    async with httpx.AsyncClient(timeout=PEER_CHECK_TIMEOUT_S, trust_env=False) as client:
        for url in others:
            try:
                answer = await client.get(f"{url}/readyz")
                body = answer.json()
            except (httpx.HTTPError, ValueError):
                continue
            if answer.status_code == 200 and body.get("conversations", 0) < body.get(
                    "max_conversations", 0):
                return url
    return None


async def forward_socket(ws: WebSocket, url: str, credential: Credential, node: Node) -> None:
    """Relay the accepted WebSocket ``ws`` to the same path and query on ``url`` until
    either side ends: a call's sideband, or a session this worker has no room for
    (server/realtime_ws.py). The Preview header and subprotocols go along (the other
    process picks the dialect from them); the key goes as a bearer header."""
    target_url = _ws_url(url, ws.url.path, ws.url.query)
    headers = {"Authorization": f"Bearer {credential.value}", FORWARDED_HEADER: node.id}
    if ws.headers.get("openai-beta"):
        headers["OpenAI-Beta"] = ws.headers["openai-beta"]
    subprotocols = [Subprotocol(p) for p in ws.scope.get("subprotocols") or []
                    if not p.startswith(INSECURE_KEY_SUBPROTOCOL_PREFIX)]
    try:
        peer = await connect(target_url, additional_headers=headers, max_size=None,
                             subprotocols=subprotocols or None,
                             compression=None, proxy=None, open_timeout=CONNECT_TIMEOUT_S)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        log.warning("%s: %s did not answer: %s", ws.url.path, url, type(exc).__name__)
        call_id = ws.query_params.get("call_id")
        await _refuse(ws, owner_unreachable(call_id) if call_id else RealtimeError(
            "The server this session was handed to did not answer; try again.",
            "server_busy", type="server_error"), 1011 if call_id else 1013)
        return
    log.info("%s forwarded to %s", "sideband" if ws.query_params.get("call_id") else "session", url)
    async with peer:
        pumps = [asyncio.create_task(_down(peer, ws)), asyncio.create_task(_up(ws, peer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        code, reason = peer.close_code, peer.close_reason
    with contextlib.suppress(Exception):
        await ws.close(code or 1000, reason or "")


async def _down(peer: ClientConnection, ws: WebSocket) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in peer:
            if isinstance(message, str):
                await ws.send_text(message)
            else:
                await ws.send_bytes(message)


async def _up(ws: WebSocket, peer: ClientConnection) -> None:
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await peer.send(message["text"])
            elif message.get("bytes") is not None:
                await peer.send(message["bytes"])
    except (WebSocketDisconnect, ConnectionClosed):
        pass
    await peer.close()


async def _refuse(ws: WebSocket, error: RealtimeError, close_code: int) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await refuse(ws, error, close_code)


async def forward_request(request: Request, url: str, credential: Credential, node: Node,
                          body: bytes | None = None) -> Response:
    """Re-send ``request`` (a hangup: no body; a SIP accept/reject/refer: its JSON ``body``)
    to the same path on ``url``; its answer back."""
    headers = {"Authorization": f"Bearer {credential.value}", FORWARDED_HEADER: node.id}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S, trust_env=False) as client:
            answer = await client.request(request.method, f"{url}{request.url.path}", headers=headers,
                                          content=body)
    except httpx.HTTPError as exc:
        log.warning("%s: the call's owner at %s did not answer: %s", request.url.path, url,
                    type(exc).__name__)
        error = owner_unreachable(request.path_params.get("call_id", ""))
        return error_response(502, error)
    return Response(answer.content, status_code=answer.status_code,
                    media_type=answer.headers.get("content-type"))


__all__ = ["forward_request", "forward_socket", "owner_gone", "owner_unreachable", "peer_with_room", "target"]

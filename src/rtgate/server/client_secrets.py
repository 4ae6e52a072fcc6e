"""``POST …/realtime/client_secrets``: mint ephemeral keys (docs/protocol.md, Client
secrets and SDK versions).

Served on ``/openai/v1/realtime/client_secrets``, ``/v1/realtime/client_secrets`` and the
``AzureOpenAI`` client's ``/openai/realtime/client_secrets?api-version=…``. A standard API
key is required (an ephemeral key cannot mint another). The request's ``session`` is
validated as a complete GA session and bound to the key (see :mod:`.ephemeral`); the
response is ``{value, expires_at, session}`` where ``session`` carries ``id``, ``object``,
``type``, ``expires_at: 0`` and a redundant ``client_secret`` so it validates on every SDK
version from 1.107 on. Errors use the cloud's REST body
``{"error": {"message", "type", "param", "code"}}``.

A model routed to a cloud upstream (the relay) gets an rtgate key too, by default: the
client then talks to rtgate, which relays with the upstream key. An upstream ephemeral key
would let the client connect to the cloud directly, bypassing rtgate's routing, limits and
metrics; an upstream configured with ``client_secrets = "upstream"`` opts into exactly
that, and the request is forwarded there (docs/relay.md).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..protocol.errors import RealtimeError, invalid_value, missing_parameter, unknown_parameter
from ..protocol.session import SessionConfig, session_wire, validate_session
from ..relay.upstream import UpstreamUnavailable, mint_upstream_client_secret
from .auth import Grant, extract_credential
from .ephemeral import SessionTooLarge
from .relay_wiring import relay_limits
from .scope import unknown_model

log = logging.getLogger("rtgate.client_secrets")

MIN_TTL_S = 10
MAX_TTL_S = 7200
DEFAULT_TTL_S = 600
MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted by the REST routes, in bytes."""

PATHS = (
    "/openai/v1/realtime/client_secrets",
    "/v1/realtime/client_secrets",
    "/openai/realtime/client_secrets",
)


class RestError(Exception):
    """A REST failure: an HTTP status and an OpenAI-style error."""

    def __init__(self, status: int, error: RealtimeError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


def error_response(status: int, error: RealtimeError,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param,
                      "code": error.code}}
    return JSONResponse(body, status_code=status, headers=headers)


def authenticate(request: Request, *, allow_ephemeral: bool) -> Grant:
    """The grant for the request's key; raises :class:`RestError` (401) otherwise."""
    state = request.app.state.rtgate
    credential = extract_credential(request.headers, request.query_params, [])
    grant: Grant | None = state.auth.check(credential)
    if credential is None:
        raise RestError(401, RealtimeError(
            "Missing bearer or basic authentication in header. Send the key as "
            "'Authorization: Bearer <key>' or an 'api-key' header.", None))
    if grant is None:
        raise RestError(401, RealtimeError(
            "Incorrect API key provided (or the ephemeral key has expired).", "invalid_api_key"))
    if grant.ephemeral and not allow_ephemeral:
        raise RestError(401, RealtimeError(
            "An ephemeral key cannot be used for this request; use a standard API key.",
            "invalid_api_key"))
    return grant


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RestError(413, RealtimeError(
                f"The request body is larger than {limit} bytes.", "request_too_large"))
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_ttl(raw: Any) -> int:
    if raw is None:
        return DEFAULT_TTL_S
    if not isinstance(raw, dict):
        raise RealtimeError("Invalid type for 'expires_after': expected an object.",
                            "invalid_type", "expires_after")
    for key in raw:
        if key not in ("anchor", "seconds"):
            raise unknown_parameter(f"expires_after.{key}")
    if raw.get("anchor", "created_at") != "created_at":
        raise invalid_value("expires_after.anchor", raw["anchor"], "'created_at'")
    seconds = raw.get("seconds", DEFAULT_TTL_S)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise RealtimeError("Invalid type for 'expires_after.seconds': expected an integer.",
                            "invalid_type", "expires_after.seconds")
    if seconds < MIN_TTL_S:
        raise RealtimeError(
            f"Invalid 'expires_after.seconds': integer below minimum value. Expected a value "
            f">= {MIN_TTL_S}, but got {seconds} instead.",
            "integer_below_min_value", "expires_after.seconds")
    if seconds > MAX_TTL_S:
        raise RealtimeError(
            f"Invalid 'expires_after.seconds': integer above maximum value. Expected a value "
            f"<= {MAX_TTL_S}, but got {seconds} instead.",
            "integer_above_max_value", "expires_after.seconds")
    return seconds


def json_object(body: bytes) -> dict[str, Any]:
    """A REST request body that must be a JSON object (an empty body is ``{}``); raises
    RealtimeError (``invalid_json``, ``invalid_type``: a 400) otherwise."""
    try:
        raw = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise RealtimeError("The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(raw, dict):
        raise RealtimeError("The request body must be a JSON object.", "invalid_type")
    return raw


def parse_request(body: bytes) -> tuple[int, SessionConfig]:
    """``(ttl_s, session)`` from a client_secrets request body; raises RealtimeError."""
    raw = json_object(body)
    for key in raw:
        if key not in ("expires_after", "session"):
            raise unknown_parameter(key)
    ttl = _parse_ttl(raw.get("expires_after"))
    session = raw.get("session")
    if session is None:
        session = {"type": "realtime"}
    elif isinstance(session, dict) and "type" not in session:
        raise missing_parameter("session.type")
    return ttl, validate_session(session)


def bound_session(config: SessionConfig) -> dict[str, Any]:
    """The compact form of a validated config carried in a key (explicit nulls kept)."""
    return config.model_dump(mode="json", exclude_unset=True)


async def _mint_upstream(request: Request, body: bytes, config: SessionConfig) -> Response | None:
    """The upstream's own answer when the session's model is relayed to an upstream with
    ``client_secrets = "upstream"``; ``None`` otherwise (rtgate mints the key)."""
    model = getattr(config, "model", None)
    upstream = request.app.state.rtgate.router.upstream_for(model) if model else None
    if upstream is None or upstream.client_secrets != "upstream":
        return None
    try:
        status, payload = await mint_upstream_client_secret(
            upstream, orjson.loads(body), relay_limits(request.app.state.rtgate.settings))
    except UpstreamUnavailable as exc:
        raise RestError(502, RealtimeError(exc.message, exc.code, type="server_error")) from None
    log.info("forwarded client_secrets to upstream %s (status %d)", upstream.name, status)
    return JSONResponse(payload, status_code=status)


async def create_client_secret(request: Request) -> Response:
    try:
        grant = authenticate(request, allow_ephemeral=False)
        body = await read_body(request)
        try:
            ttl, config = parse_request(body)
        except RealtimeError as error:
            raise RestError(400, error) from None
        refusal = unknown_model(getattr(config, "model", None), request.app.state.rtgate.router)
        if refusal is not None:
            raise RestError(400, refusal)
        forwarded = await _mint_upstream(request, body, config)
        if forwarded is not None:
            return forwarded
        store = request.app.state.rtgate.ephemeral
        try:
            key, expires_at = store.mint(bound_session(config), ttl, account=grant.account)
        except SessionTooLarge as exc:
            raise RestError(400, RealtimeError(str(exc), "invalid_value", "session")) from None
    except RestError as exc:
        return error_response(exc.status, exc.error)
    session = session_wire(config, session_id=f"sess_{secrets.token_hex(11)}", expires_at=0)
    session["client_secret"] = {"value": key, "expires_at": expires_at}
    log.info("minted an ephemeral key (ttl %d s, session type %s)", ttl, config.type)
    return JSONResponse({"value": key, "expires_at": expires_at, "session": session})

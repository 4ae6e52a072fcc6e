"""Preview (beta) REST: ephemeral keys in the Preview response shape (docs/protocol.md,
Client secrets and Preview dialect).

``POST …/realtime/sessions`` and ``POST …/realtime/transcription_sessions`` were how Preview
apps minted a one-minute key for a browser or phone; the cloud retired them with the Preview
protocol. rtgate serves them on the OpenAI paths (``/v1/realtime/…``), the ``/openai/v1``
base that Azure GA samples use, Azure's Preview ``/openai/realtimeapi/sessions?api-version=…``
and the ``AzureOpenAI`` 1.x client's ``/openai/realtime/…`` (``api-version`` is tolerated and
ignored everywhere).

Contract:

* A standard API key is required (``Authorization: Bearer`` or ``api-key``); an ephemeral
  key cannot mint another (401 ``invalid_api_key``).
* The body is the flat Preview session; it is translated to a GA session config by
  :func:`~rtgate.protocol.preview.preview_sessions_request_to_ga`, validated as a complete
  GA session, and bound to the key by the server's ephemeral key store
  (``app.state.rtgate.ephemeral``: ``mint(session, ttl_s) -> (key, expires_at)``), the same
  store that serves GA ``client_secrets``. A key minted by ``/transcription_sessions`` binds a
  ``type:"transcription"`` session, so a Preview socket opened with it is a transcription
  session.
* The key lives :data:`~rtgate.protocol.preview.PREVIEW_KEY_TTL_S` (60 s) unless the body asks
  for ``client_secret.expires_after.seconds`` (``expires_at.seconds`` for transcription),
  10–7200 s.
* The response is the Preview session object with ``client_secret: {value, expires_at}``
  (SDK 1.x ``SessionCreateResponse`` / ``TranscriptionSession``). Preview fields with no GA
  equivalent are dropped and logged once (field paths only).
* Authentication, body limits and error bodies (``{"error": {"message", "type", "param",
  "code"}}``) are those of :mod:`.client_secrets`.
"""

from __future__ import annotations

import logging
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..protocol.errors import SERVER_ERROR, RealtimeError
from ..protocol.preview import (
    PREVIEW_KEY_TTL_S,
    PreviewTranslationError,
    preview_sessions_request_to_ga,
    preview_sessions_response,
)
from ..protocol.session import session_wire, validate_session
from .client_secrets import (
    MAX_TTL_S,
    MIN_TTL_S,
    RestError,
    authenticate,
    bound_session,
    error_response,
    json_object,
    read_body,
)
from .ephemeral import SessionTooLarge
from .scope import unknown_model

log = logging.getLogger("rtgate.preview_rest")

SESSIONS_PATHS = (
    "/v1/realtime/sessions",
    "/openai/v1/realtime/sessions",
    "/openai/realtimeapi/sessions",
    "/openai/realtime/sessions",
)
TRANSCRIPTION_SESSIONS_PATHS = (
    "/v1/realtime/transcription_sessions",
    "/openai/v1/realtime/transcription_sessions",
    "/openai/realtimeapi/transcription_sessions",
    "/openai/realtime/transcription_sessions",
)


def _ttl(requested: int | None, *, transcription: bool) -> int:
    if requested is None:
        return PREVIEW_KEY_TTL_S
    param = f"client_secret.{'expires_at' if transcription else 'expires_after'}.seconds"
    if not MIN_TTL_S <= requested <= MAX_TTL_S:
        raise RestError(
            400,
            RealtimeError(
                f"Invalid '{param}': expected a value from {MIN_TTL_S} to {MAX_TTL_S} seconds, "
                f"but got {requested} instead.",
                "integer_below_min_value" if requested < MIN_TTL_S else "integer_above_max_value",
                param,
            ),
        )
    return requested


async def _mint(request: Request, *, transcription: bool) -> Response:
    try:
        authenticate(request, allow_ephemeral=False)
        raw = await read_body(request)
        try:
            body = json_object(raw)
            translated = preview_sessions_request_to_ga(body, transcription=transcription)
            config = validate_session(translated.session)
        except PreviewTranslationError as exc:
            raise RestError(400, RealtimeError(exc.message, exc.code, exc.param)) from None
        except RealtimeError as error:
            raise RestError(400, error) from None
        refusal = unknown_model(getattr(config, "model", None), request.app.state.rtgate.router,
                                "model")
        if refusal is not None:
            raise RestError(400, refusal)
        ttl = _ttl(translated.ttl_s, transcription=transcription)
        store = getattr(request.app.state.rtgate, "ephemeral", None)
        if store is None:
            raise RestError(
                501,
                RealtimeError(
                    "This rtgate server has no ephemeral key store, so it cannot mint keys.",
                    "ephemeral_keys_unavailable",
                    type=SERVER_ERROR,
                ),
            )
        try:
            key, expires_at = store.mint(bound_session(config), ttl)
        except SessionTooLarge as exc:
            raise RestError(400, RealtimeError(str(exc), "invalid_value", None)) from None
    except RestError as exc:
        return error_response(exc.status, exc.error)
    for notice in translated.notices:
        log.warning("Preview sessions request: %s", notice.message)
    ga_session = session_wire(config, session_id=f"sess_{secrets.token_hex(11)}", expires_at=0)
    model = body.get("model")
    response = preview_sessions_response(
        ga_session,
        secret_value=key,
        secret_expires_at=expires_at,
        client_model=model if isinstance(model, str) else None,
    )
    log.info("minted a Preview ephemeral key (ttl %d s, session type %s)", ttl, config.type)
    return JSONResponse(response)


async def create_session(request: Request) -> Response:
    """``POST …/realtime/sessions``: a key bound to a realtime session."""
    return await _mint(request, transcription=False)


async def create_transcription_session(request: Request) -> Response:
    """``POST …/realtime/transcription_sessions``: a key bound to a transcription session."""
    return await _mint(request, transcription=True)


ROUTES: list[Route] = [
    *(Route(path, create_session, methods=["POST"]) for path in SESSIONS_PATHS),
    *(Route(path, create_transcription_session, methods=["POST"]) for path in TRANSCRIPTION_SESSIONS_PATHS),
]

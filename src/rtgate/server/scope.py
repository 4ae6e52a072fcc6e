"""What an ephemeral key may reach (issue 17, defect 4 and 5).

An ephemeral key (``ek_…``, :mod:`.ephemeral`) is minted for one session config and is
meant for a browser: it must not reach further than that session. Every route checks:

* **model** — a WebSocket (``?model=`` / ``?deployment=``) or a WebRTC offer may name a
  model only when it is the key's; a key minted without a model (a transcription session,
  or a realtime session that left it out) reaches only what the default model reaches. So
  a key for a local model never opens a relayed upstream session and the reverse, and
  ``session.created`` always reports the model that serves the session;
* **calls** — a call is hung up by the key that started it, or by an API key
  (:func:`may_hang_up`); the sideband refuses ephemeral keys altogether (server/calls.py);
* **minting** — ``client_secrets`` refuses a model that routes nowhere (:func:`unknown_model`).

Errors are the cloud's: ``invalid_request_error`` with code ``invalid_model`` and the
parameter that named the model; a hangup by another key gets ``403`` and the same body
as an unknown call would not (the call exists; the key is not its owner).
"""

from __future__ import annotations

from typing import Any

from ..protocol.errors import RealtimeError, echo
from .auth import Grant, key_id

DEFAULT_MODEL = "gpt-realtime"
"""The model a realtime session without one gets (the cloud's default)."""


def key_model(grant: Grant) -> str | None:
    """The model bound to an ephemeral key's session, if it names one."""
    session = grant.session or {}
    model = session.get("model") if session.get("type", "realtime") == "realtime" else None
    return model if isinstance(model, str) else None


def model_refusal(grant: Grant, requested: str | None, router: Any, *,
                  param: str = "model") -> RealtimeError | None:
    """Why ``grant`` may not open a session of ``requested`` (``None``: it may).

    API keys may ask for any model. An ephemeral key may name its own model, or — when it
    has none — a model that routes where the default model does.
    """
    if not grant.ephemeral or not requested:
        return None
    bound = key_model(grant)
    if bound is not None:
        if requested == bound:
            return None
    elif router.route(requested) is router.route(DEFAULT_MODEL):
        return None
    allowed = f"'{echo(bound)}'" if bound else "the default model"
    return RealtimeError(
        f"Invalid model: '{echo(requested)}'. This ephemeral key was minted for {allowed}; "
        "connect without a model parameter or with the key's own model, or mint a key for "
        f"'{echo(requested)}'.",
        "invalid_model",
        param,
    )


def unknown_model(model: str | None, router: Any, param: str = "session.model") -> RealtimeError | None:
    """The cloud's 400 for minting a key for a model this server does not route."""
    if model is None or router.route(model) is not None:
        return None
    return RealtimeError(
        f"Invalid model: '{echo(model)}'. This rtgate server routes official realtime model "
        "names and the names in its profile configuration.",
        "invalid_model",
        param,
    )


def may_hang_up(grant: Grant, owner: str | None) -> bool:
    """An API key may end any call; an ephemeral key only the call it started."""
    return not grant.ephemeral or (grant.key_id is not None and grant.key_id == owner)


__all__ = ["DEFAULT_MODEL", "key_id", "key_model", "may_hang_up", "model_refusal", "unknown_model"]

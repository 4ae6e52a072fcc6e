"""The Preview (beta) dialect as two pure translations over GA wire events
(docs/protocol.md, Preview dialect).

``preview_client_to_ga`` turns one Preview client event into the GA client events that mean
the same; ``ga_server_to_preview`` turns one GA server event into what a Preview server
would have sent. Both take plain JSON dicts and a small :class:`PreviewState`; neither does
I/O. The transport decides when a connection speaks Preview (``OpenAI-Beta: realtime=v1``
or the ``openai-beta.realtime-v1`` subprotocol) and runs every event through these.

Rules, in the order they apply:

1. Client events. ``session.update`` and ``transcription_session.update`` carry the flat
   Preview session and become a GA ``session.update`` whose ``session.type`` is
   ``realtime`` or ``transcription``; ``response.create`` and ``conversation.item.create``
   have their embedded response/item translated; every other client event has the same
   name and shape in both dialects and passes through (an unknown type too, so that the GA
   side answers it with its own ``invalid_value`` error).
2. Dropped fields. A Preview field with no GA equivalent (``temperature``, VAD fields the
   chosen detector does not take, output fields in a transcription session) is left out and
   reported as a :class:`Notice`, once per field path per connection.
3. Server events are renamed with :data:`~rtgate.protocol.dialects.GA_TO_PREVIEW_SERVER_EVENTS`
   and their embedded sessions, items and responses reshaped. The first ``session.created``
   of a realtime connection is followed by ``conversation.created`` (Preview servers sent
   it); a transcription connection gets ``transcription_session.created``/``updated``.
4. ``conversation.item.done`` is dropped. Preview has no such event: a Preview client learns
   an item from ``conversation.item.created`` (GA ``added``) and, for assistant items that
   were still in progress, the final item from ``response.output_item.done`` — exactly as
   a Preview server told it.
5. GA-only server events (:data:`GA_ONLY_SERVER_EVENTS`, MCP events, anything unknown) are
   dropped and counted in ``PreviewState.dropped_server_events``; a translated event never
   has a type outside :data:`PREVIEW_SERVER_EVENT_TYPES`.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from rtgate.protocol.dialects import CLIENT_EVENT_RENAMES, GA_TO_PREVIEW_SERVER_EVENTS
from rtgate.protocol.preview_shapes import (
    JSON,
    PreviewTranslationError,
    ga_item_to_preview,
    ga_response_to_preview,
    ga_session_to_preview,
    preview_item_to_ga,
    preview_response_params_to_ga,
    preview_session_to_ga,
)

__all__ = [
    "GA_ONLY_SERVER_EVENTS",
    "MAX_LOGGED_NOTICES",
    "PREVIEW_KEY_TTL_S",
    "PREVIEW_SERVER_EVENT_TYPES",
    "BridgeStats",
    "Notice",
    "PreviewSessionsRequest",
    "PreviewState",
    "PreviewTranslationError",
    "ga_server_to_preview",
    "preview_client_to_ga",
    "preview_sessions_request_to_ga",
    "preview_sessions_response",
]

# Preview ephemeral keys lived one minute (docs/protocol.md, Client secrets).
PREVIEW_KEY_TTL_S: Final = 60

# Every server event type a Preview client can receive (the ``openai.types.beta.realtime`` union, plus
# ``transcription_session.created``, which Preview servers sent although the SDK's beta
# union never listed it).
PREVIEW_SERVER_EVENT_TYPES: Final = frozenset(
    {
        "conversation.created",
        "conversation.item.created",
        "conversation.item.deleted",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "error",
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "output_audio_buffer.cleared",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "rate_limits.updated",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.created",
        "response.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.text.delta",
        "response.text.done",
        "session.created",
        "session.updated",
        "transcription_session.created",
        "transcription_session.updated",
    }
)

# GA server events with no Preview counterpart (docs/protocol.md, Preview dialect), dropped on the way out.
GA_ONLY_SERVER_EVENTS: Final = frozenset(
    {
        "conversation.item.done",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.dtmf_event_received",
        "input_audio_buffer.timeout_triggered",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)

# Why a Preview field was dropped, by its last path component; the fallback covers the rest.
_DROP_REASONS: Final[dict[str, str]] = {
    "temperature": "the GA protocol has no sampling temperature; the model's default applies",
    "modalities": "a GA transcription session produces text only",
}
_DROP_REASON_DEFAULT: Final = "the GA protocol has no equivalent for this field here"


@dataclass(frozen=True)
class Notice:
    """A Preview field the bridge left out; the transport logs it or sends it as a warning.

    ``param`` is the Preview path (``session.temperature``); ``code`` is always
    ``preview_field_dropped``.
    """

    param: str
    message: str
    code: str = "preview_field_dropped"


@dataclass
class PreviewState:
    """What the translation remembers about one Preview connection.

    ``transcription``: the connection is a transcription session (``?intent=transcription``,
    a key minted by ``/realtime/transcription_sessions``, or a ``transcription_session.update``
    from the client). ``client_model``: the model name the client connected with, reported
    in Preview session objects. ``notified``: field paths already reported as notices.
    """

    transcription: bool = False
    client_model: str | None = None
    notified: set[str] = field(default_factory=set)
    conversation_announced: bool = False
    dropped_server_events: Counter[str] = field(default_factory=Counter)


def _notices(dropped: list[str], state: PreviewState) -> list[Notice]:
    out: list[Notice] = []
    for param in dropped:
        if param in state.notified:
            continue
        state.notified.add(param)
        reason = _DROP_REASONS.get(param.rsplit(".", 1)[-1], _DROP_REASON_DEFAULT)
        out.append(Notice(param, f"Preview field '{param}' was ignored: {reason}."))
    return out


# --- client → server ---------------------------------------------------------------------


def preview_client_to_ga(event: JSON, state: PreviewState) -> tuple[list[JSON], list[Notice]]:
    """Translate one Preview client event into GA client events and one-time notices.

    Raises :class:`PreviewTranslationError` for a value with no GA form (an unknown audio
    format string, an ``item_reference`` content part); the transport answers it with an
    ``error`` event carrying the client's ``event_id``.
    """
    kind = event.get("type")
    dropped: list[str] = []
    out = copy.deepcopy(event)
    if kind in ("session.update", "transcription_session.update"):
        transcription = kind == "transcription_session.update" or state.transcription
        state.transcription = transcription
        out["type"] = CLIENT_EVENT_RENAMES.get(kind, kind)
        session = event.get("session")
        if isinstance(session, dict):
            out["session"] = preview_session_to_ga(
                session, transcription=transcription, dropped=dropped
            )
    elif kind == "response.create" and isinstance(event.get("response"), dict):
        out["response"] = preview_response_params_to_ga(event["response"], dropped=dropped)
    elif kind == "conversation.item.create" and isinstance(event.get("item"), dict):
        out["item"] = preview_item_to_ga(event["item"])
    return [out], _notices(dropped, state)


# --- server → client ---------------------------------------------------------------------


def _conversation_created(created: JSON) -> JSON:
    session = created.get("session") or {}
    session_id = str(session.get("id") or "")
    conversation_id = "conv_" + session_id.removeprefix("sess_") if session_id else None
    return {
        "type": "conversation.created",
        "event_id": f"{created.get('event_id', 'event')}_conv",
        "conversation": {"id": conversation_id, "object": "realtime.conversation"},
    }


def _session_event(event: JSON, state: PreviewState) -> list[JSON]:
    session = event.get("session")
    out = copy.deepcopy(event)
    if isinstance(session, dict):
        if session.get("type") == "transcription":
            state.transcription = True
        out["session"] = ga_session_to_preview(session, client_model=state.client_model)
    if state.transcription:
        out["type"] = "transcription_" + str(event["type"])
        return [out]
    events = [out]
    if event["type"] == "session.created" and not state.conversation_announced:
        state.conversation_announced = True
        events.append(_conversation_created(event))
    return events


def ga_server_to_preview(event: JSON, state: PreviewState) -> list[JSON]:
    """Translate one GA server event into the Preview server events a Preview client expects.

    Returns zero events for GA-only events (counted in ``state.dropped_server_events``), two
    for the first realtime ``session.created`` (it is followed by ``conversation.created``),
    one otherwise.
    """
    kind = event.get("type")
    if kind in ("session.created", "session.updated"):
        return _session_event(event, state)
    name = GA_TO_PREVIEW_SERVER_EVENTS.get(kind, kind) if isinstance(kind, str) else None
    if (name is None or name not in PREVIEW_SERVER_EVENT_TYPES
            or name.startswith("transcription_session.")):
        state.dropped_server_events[str(kind)] += 1
        return []
    out = copy.deepcopy(event)
    out["type"] = name
    if isinstance(event.get("item"), dict):
        item = ga_item_to_preview(event["item"])
        if item is None:
            state.dropped_server_events[str(kind)] += 1
            return []
        out["item"] = item
    if isinstance(event.get("response"), dict):
        out["response"] = ga_response_to_preview(event["response"])
    part = out.get("part")
    if isinstance(part, dict) and part.get("type") in ("output_text", "output_audio"):
        part["type"] = str(part["type"]).removeprefix("output_")
    return [out]


# --- REST: POST /v1/realtime/sessions and /v1/realtime/transcription_sessions ----------------


@dataclass(frozen=True)
class PreviewSessionsRequest:
    """A Preview sessions-request body in GA terms.

    ``session``: a GA session config (``type`` set) for the key to bind. ``ttl_s``: the key
    lifetime the client asked for, or ``None`` for :data:`PREVIEW_KEY_TTL_S`.
    """

    session: JSON
    ttl_s: int | None
    notices: list[Notice]


def _requested_ttl(client_secret: Any) -> int | None:
    # /sessions says client_secret.expires_after.seconds; /transcription_sessions says
    # client_secret.expires_at.seconds (same meaning, SDK 1.107 beta params).
    if not isinstance(client_secret, dict):
        return None
    for key in ("expires_after", "expires_at"):
        spec = client_secret.get(key)
        if isinstance(spec, dict) and isinstance(spec.get("seconds"), int):
            return int(spec["seconds"])
    return None


def preview_sessions_request_to_ga(body: JSON, *, transcription: bool) -> PreviewSessionsRequest:
    """Translate the body of a Preview ``POST …/realtime/sessions`` (or ``…/transcription_sessions``
    when ``transcription``) into the GA session config and key TTL it asks for.
    """
    dropped: list[str] = []
    session = preview_session_to_ga(body, transcription=transcription, dropped=dropped)
    state = PreviewState(transcription=transcription)
    return PreviewSessionsRequest(
        session, _requested_ttl(body.get("client_secret")), _notices(dropped, state)
    )


def preview_sessions_response(
    ga_session: JSON,
    *,
    secret_value: str,
    secret_expires_at: int,
    client_model: str | None = None,
) -> JSON:
    """Build the Preview sessions response: the flat session with ``client_secret{value,
    expires_at}`` (SDK 1.x ``SessionCreateResponse`` / ``TranscriptionSession``).
    """
    out = ga_session_to_preview(ga_session, client_model=client_model)
    out["client_secret"] = {"value": secret_value, "expires_at": secret_expires_at}
    return out


MAX_LOGGED_NOTICES: Final = 32
"""Distinct dropped-field paths a bridge logs per connection; later ones are only counted."""


@dataclass
class BridgeStats:
    """Counters of one Preview connection, for the close log line and metrics; kept by the
    local bridge (:mod:`rtgate.transport.preview_bridge`) and the relay's
    (:mod:`rtgate.relay.preview`) alike.

    ``notices``: dropped Preview fields by path, at most :data:`MAX_LOGGED_NOTICES` paths
    (``notices_suppressed`` counts the rest). ``translation_errors``: client events
    answered with an ``error`` because a value had no GA form. ``events_in`` / ``events_out``:
    Preview frames received from and sent to the client.
    """

    notices: Counter[str] = field(default_factory=Counter)
    notices_suppressed: int = 0
    translation_errors: int = 0
    events_in: int = 0
    events_out: int = 0

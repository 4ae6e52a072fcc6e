"""Decoding GA client events: one text frame → one typed event or an error (docs/protocol.md,
Framing and identifiers, Client events).

:func:`decode_client_event` never raises for bad input; it returns a
:class:`~rtgate.protocol.errors.RealtimeError` carrying the client's ``event_id`` when
one could be read, so the session reports it and goes on. ``input_audio_buffer.append``
takes a hand-written fast path (it is most of the traffic): no pydantic, one strict
base64 decode.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import RealtimeError, echo, from_validation_error, invalid_value
from .items import ConversationItem, ResponseCreateParams

GA_CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    event_id: str | None = None


class SessionUpdate(_Event):
    type: Literal["session.update"]
    # Validated by rtgate.protocol.session.apply_update against the current session.
    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputAudioAppend:
    """``input_audio_buffer.append`` with its audio already base64-decoded."""

    audio: bytes
    event_id: str | None = None
    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"


class InputAudioCommit(_Event):
    type: Literal["input_audio_buffer.commit"]


class InputAudioClear(_Event):
    type: Literal["input_audio_buffer.clear"]


class ItemCreate(_Event):
    type: Literal["conversation.item.create"]
    item: ConversationItem
    previous_item_id: str | None = None


class ItemRetrieve(_Event):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ItemDelete(_Event):
    type: Literal["conversation.item.delete"]
    item_id: str


class ItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: Annotated[int, Field(ge=0)]
    audio_end_ms: Annotated[int, Field(ge=0)]


class ResponseCreate(_Event):
    type: Literal["response.create"]
    response: ResponseCreateParams | None = None


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


class OutputAudioClear(_Event):
    type: Literal["output_audio_buffer.clear"]


_Validated = Annotated[
    SessionUpdate
    | InputAudioCommit
    | InputAudioClear
    | ItemCreate
    | ItemRetrieve
    | ItemDelete
    | ItemTruncate
    | ResponseCreate
    | ResponseCancel
    | OutputAudioClear,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(_Validated)

ClientEvent = (
    SessionUpdate
    | InputAudioAppend
    | InputAudioCommit
    | InputAudioClear
    | ItemCreate
    | ItemRetrieve
    | ItemDelete
    | ItemTruncate
    | ResponseCreate
    | ResponseCancel
    | OutputAudioClear
)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Limits applied while decoding one client event."""

    max_append_bytes: int = 15 * 1024 * 1024
    """Decoded audio bytes in one ``input_audio_buffer.append`` (the cloud allows 15 MiB,
    docs/protocol.md, Limits)."""
    max_json_depth: int = 32
    """Nesting depth of objects and arrays in one event."""


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return False


def decode_json(frame: str | bytes) -> dict[str, Any] | RealtimeError:
    """Parse one frame as a JSON object, or return ``invalid_json``."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        detail = str(exc)
        if "infinity" in detail:  # orjson's wording for a number no double can hold
            detail = (f"a number is too large (numbers must fit in a 64-bit integer or a "
                      f"double): {detail.split(': ', 1)[-1]}")
        return RealtimeError(
            f"Invalid event: failed to parse JSON value. {detail}", "invalid_json", None
        )
    if not isinstance(obj, dict):
        return RealtimeError(
            "Invalid event: expected a JSON object.", "invalid_json", None
        )
    return obj


def decode_client_event(
    frame: str | bytes, limits: DecodeLimits = DecodeLimits()
) -> ClientEvent | RealtimeError:
    """Decode one text frame into a typed GA client event, or the error to report."""
    obj = decode_json(frame)
    if isinstance(obj, RealtimeError):
        return obj
    return parse_client_event(obj, limits)


def parse_client_event(
    obj: dict[str, Any], limits: DecodeLimits = DecodeLimits()
) -> ClientEvent | RealtimeError:
    """Validate an already parsed event object."""
    raw_event_id = obj.get("event_id")
    event_id = raw_event_id if isinstance(raw_event_id, str) else None
    kind = obj.get("type")
    if kind == "input_audio_buffer.append":
        return _parse_append(obj, event_id, limits)
    if not isinstance(kind, str):
        error = (
            RealtimeError("Missing required parameter: 'type'.", "missing_required_parameter", "type")
            if kind is None
            else RealtimeError(
                "Invalid type for 'type': expected a string.", "invalid_type", "type"
            )
        )
        return error.with_event_id(event_id)
    if kind not in GA_CLIENT_EVENT_TYPES:
        return invalid_value(
            "type", kind, ", ".join(f"'{t}'" for t in GA_CLIENT_EVENT_TYPES)
        ).with_event_id(event_id)
    if _depth_exceeds(obj, limits.max_json_depth):
        return RealtimeError(
            f"Invalid event: nesting deeper than {limits.max_json_depth} levels.",
            "invalid_value",
            None,
        ).with_event_id(event_id)
    try:
        event: ClientEvent = _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        return from_validation_error(exc).with_event_id(event_id)
    return event


def _parse_append(
    obj: dict[str, Any], event_id: str | None, limits: DecodeLimits
) -> InputAudioAppend | RealtimeError:
    for key in obj:
        if key not in ("type", "audio", "event_id"):
            return RealtimeError(
                f"Unknown parameter: '{echo(key)}'.", "unknown_parameter", key
            ).with_event_id(event_id)
    if "event_id" in obj and obj["event_id"] is not None and event_id is None:
        return RealtimeError(
            "Invalid type for 'event_id': expected a string.", "invalid_type", "event_id"
        )
    audio = obj.get("audio")
    if audio is None:
        return RealtimeError(
            "Missing required parameter: 'audio'.", "missing_required_parameter", "audio"
        ).with_event_id(event_id)
    if not isinstance(audio, str):
        return RealtimeError(
            "Invalid type for 'audio': expected a base64 string.", "invalid_type", "audio"
        ).with_event_id(event_id)
    # Reject oversize payloads before decoding them: base64 is 4 chars per 3 bytes.
    if len(audio) // 4 * 3 > limits.max_append_bytes + 3:
        return RealtimeError(
            f"Invalid 'audio': an append may carry at most {limits.max_append_bytes} bytes of "
            f"audio; send it in smaller chunks.",
            "invalid_value",
            "audio",
        ).with_event_id(event_id)
    try:
        if len(audio) % 4:  # padded base64 only: strict mode lets 'QUJD=' through
            raise ValueError
        data = binascii.a2b_base64(audio, strict_mode=True)
    except (binascii.Error, ValueError):
        return RealtimeError(
            "Invalid 'audio': not valid base64-encoded audio.", "invalid_value", "audio"
        ).with_event_id(event_id)
    return InputAudioAppend(audio=data, event_id=event_id)

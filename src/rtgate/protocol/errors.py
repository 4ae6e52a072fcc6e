"""OpenAI-style errors (docs/protocol.md, Errors): ``{type, code, message, param, event_id}``.

:class:`RealtimeError` is what the core returns for a bad client event; the transport
sends it as an ``error`` server event. :func:`from_validation_error` turns a pydantic
validation failure into the error the cloud service would send for the same input:
``unknown_parameter``, ``missing_required_parameter``, ``invalid_type``,
``invalid_value`` and the ``*_below_min_value`` / ``*_above_max_value`` family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class RealtimeError(Exception):
    """An error to report to the client; ``event_id`` is the client event that caused it."""

    message: str
    code: str | None = None
    param: str | None = None
    type: str = INVALID_REQUEST
    event_id: str | None = None

    @property
    def close_reason(self) -> str:
        """The WebSocket close reason that goes with this error: ``"<type>.<code>"``, or the
        type alone for an error without a code (the cloud's missing-key error has none)."""
        return f"{self.type}.{self.code}" if self.code else self.type

    def with_event_id(self, event_id: str | None) -> RealtimeError:
        return RealtimeError(self.message, self.code, self.param, self.type, event_id)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "message": echo(self.message, MAX_MESSAGE_CHARS),
            "param": None if self.param is None else echo(self.param, MAX_PARAM_CHARS),
            "event_id": self.event_id,
        }


def error_event(error: RealtimeError, event_id: str) -> dict[str, Any]:
    """The ``error`` server event that carries ``error``; ``event_id`` is the server's id of
    this event (``error.event_id`` names the client event at fault, if any). Every ``error``
    event rtgate sends outside a session core is built here (docs/protocol.md, Errors)."""
    return {"type": "error", "event_id": event_id, "error": error.to_wire()}


def invalid_value(param: str, value: Any, allowed: str | None = None) -> RealtimeError:
    shown = _show(value)
    message = f"Invalid value: {shown}."
    if allowed:
        message += f" Supported values are: {allowed}."
    return RealtimeError(message, "invalid_value", param)


def unknown_parameter(param: str) -> RealtimeError:
    return RealtimeError(f"Unknown parameter: '{echo(param)}'.", "unknown_parameter", param)


def missing_parameter(param: str) -> RealtimeError:
    return RealtimeError(
        f"Missing required parameter: '{echo(param)}'.", "missing_required_parameter", param
    )


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "none_required": "null",
    "is_instance_of": "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


ECHO_CHARS = 80
"""Characters of a client's value an error message repeats; the rest becomes ``...``."""

MAX_MESSAGE_CHARS = 1000
MAX_PARAM_CHARS = 200
"""Backstops on the wire: an error never carries more of a client's input than this."""


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """A client's value as an error message shows it, cut to ``limit`` characters: an
    error must not send back the megabyte it complains about (issue 17)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    return echo(repr(value) if isinstance(value, str) else str(value))


def _param(prefix: str, loc: tuple[int | str, ...]) -> str:
    text = prefix
    for piece in loc:
        if isinstance(piece, int):
            text += f"[{piece}]"
        elif piece in _UNION_TAGS or piece[:1].isupper() or any(c in piece for c in "-[./"):
            # Names pydantic adds to locations: tagged-union tags (``server_vad``,
            # ``audio/pcm``), union member classes (``VoiceId``), validator wrappers
            # (``constrained-int``, ``function-after[…]``), event types
            # (``conversation.item.delete``). Field names never look like these.
            continue
        else:
            text = f"{text}.{piece}" if text else piece
    return text


# Tag values and type names pydantic puts in error locations that look like field names.
# Session types are not here: sessions are validated by class, never through a tagged
# union, and ``transcription`` is also a field name (``session.audio.input.transcription``).
_UNION_TAGS = frozenset(
    {
        "server_vad", "semantic_vad", "message", "function_call", "function_call_output",
        "item_reference", "function", "mcp", "input_text", "input_audio", "input_image",
        "mcp_approval_response",
        "output_text", "output_audio", "user", "assistant", "system", "retention_ratio",
        "str", "int", "float", "bool", "list", "dict", "literal", "none", "nullable", "union",
        "default",
    }
)

_RELATIONS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_LENGTH_CODES = {
    "string_too_long": "string_above_max_length",
    "too_long": "array_above_max_length",
    "string_too_short": "invalid_value",
    "too_short": "invalid_value",
}


def from_validation_error(exc: ValidationError, prefix: str = "") -> RealtimeError:
    """Map the most relevant pydantic error to an OpenAI-style error.

    ``prefix`` is the path of the validated object in the event (``session``, ``item``,
    ``response``), so that ``param`` reads like the cloud's, e.g. ``session.audio.input.format``.
    """
    errors = exc.errors(include_url=False)
    # Unknown fields first: the cloud rejects them before looking at values.
    errors.sort(key=lambda e: 0 if e["type"] == "extra_forbidden" else 1)
    err = errors[0]
    kind = err["type"]
    param = _param(prefix, tuple(err["loc"]))
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return unknown_parameter(param)
    if kind == "missing":
        return missing_parameter(param)
    if kind in ("union_tag_invalid", "literal_error", "enum"):
        allowed = ctx.get("expected_tags") or ctx.get("expected")
        if kind == "union_tag_invalid":
            tag = ctx.get("discriminator", "'type'").strip("'")
            param = f"{param}.{tag}" if param else tag
            value = ctx.get("tag", value)
        return invalid_value(param, value, str(allowed) if allowed else None)
    if kind == "union_tag_not_found":
        tag = str(ctx.get("discriminator", "'type'")).strip("'")
        return missing_parameter(f"{param}.{tag}" if param else tag)
    if kind in _RELATIONS:
        below = kind.startswith("greater")
        number = "integer" if isinstance(value, int) and not isinstance(value, bool) else "decimal"
        limit = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
        return RealtimeError(
            f"Invalid '{param}': expected a value {_RELATIONS[kind]} {limit}, but got {value} instead.",
            f"{number}_{'below_min' if below else 'above_max'}_value",
            param,
        )
    if kind in ("int_type", "int_from_float") and isinstance(value, float) and (
        value.is_integer() and abs(value) >= 2**63
    ):
        # The JSON parser reads integers beyond 64 bits as doubles: say what was wrong.
        above = value > 0
        return RealtimeError(
            f"Invalid '{param}': the integer is {'above' if above else 'below'} the 64-bit "
            f"range (at most {2**63 - 1}); send a value within the parameter's limits.",
            f"integer_{'above_max' if above else 'below_min'}_value",
            param,
        )
    if kind in _LENGTH_CODES:
        return RealtimeError(f"Invalid '{param}': {err['msg']}.", _LENGTH_CODES[kind], param)
    if kind in _TYPE_NAMES or kind.endswith("_type") or kind.endswith("_parsing"):
        expected = _TYPE_NAMES.get(kind, kind.removesuffix("_type").removesuffix("_parsing"))
        return RealtimeError(
            f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
            "invalid_type",
            param,
        )
    return RealtimeError(f"Invalid value for '{param}': {err['msg']}.", "invalid_value", param)


SERVER_SHUTTING_DOWN = "server_shutting_down"
"""The code of the error that refuses or ends a session while the server drains."""


def shutting_down(detail: str = "") -> RealtimeError:
    """The error a drain sends (server/drain.py): refusing a new session, or ending a live
    one, local or relayed."""
    return RealtimeError(
        "This server is shutting down (a restart or a deployment)"
        + (f"; {detail}" if detail else "")
        + ". Connect again: the service routes new sessions to a server that is running.",
        SERVER_SHUTTING_DOWN,
        type=SERVER_ERROR,
    )

"""Strict validation of server events against the official ``openai`` SDK's models.

The SDK itself parses events leniently (``construct_type_unchecked``), so a wrong shape
would pass unnoticed; tests use :func:`validate_server_event` on every raw frame instead
(the same method as ``shared/tools/validate_events.py``). Needs the ``openai`` package.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any, Union, get_args, get_origin


def _members(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or str(origin) == "types.UnionType":
        out: list[Any] = []
        for arg in get_args(tp):
            out += _members(arg)
        return out
    return [tp]


@cache
def server_models() -> dict[str, Any]:
    from openai.types.realtime.realtime_server_event import RealtimeServerEvent

    by_type: dict[str, Any] = {}
    for model in _members(RealtimeServerEvent):
        for literal in get_args(model.model_fields["type"].annotation):
            by_type[literal] = model
    return by_type


class InvalidServerEvent(AssertionError):
    pass


def validate_server_event(event: dict[str, Any]) -> Any:
    """Validate one server event dict; returns the SDK model instance or raises."""
    model = server_models().get(event.get("type", ""))
    if model is None:
        raise InvalidServerEvent(f"type {event.get('type')!r} is not a GA server event")
    try:
        return model.model_validate(event)
    except Exception as exc:
        raise InvalidServerEvent(f"{event.get('type')}: {exc}") from exc

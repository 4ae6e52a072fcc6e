"""The Preview translation takes any JSON a client sends (issue 17, defect 3).

A content part or ``turn_detection`` whose ``type`` was a list or an object raised
``TypeError: unhashable type`` inside the translation and closed the session with 1011.
Anything that is not valid must reach the GA validator, which answers with an ``error``
event; the translation itself raises nothing but :class:`PreviewTranslationError`.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from rtgate.protocol.preview import (
    PreviewState,
    PreviewTranslationError,
    ga_server_to_preview,
    preview_client_to_ga,
)
from rtgate.testing.fuzz import frames

ODD_TYPES: list[Any] = [["text"], {"type": "text"}, [], {}, 1, None, True]


@pytest.mark.parametrize("odd", ODD_TYPES, ids=repr)
def test_an_assistant_content_part_of_any_type_is_passed_on(odd: Any) -> None:
    event = {"type": "conversation.item.create", "event_id": "evt_1", "item": {
        "type": "message", "role": "assistant", "content": [{"type": odd, "text": "a"}]}}
    [out], _ = preview_client_to_ga(event, PreviewState())
    assert out["item"]["content"][0]["type"] == odd  # left for the GA validator to report


@pytest.mark.parametrize("odd", [t for t in ODD_TYPES if t], ids=repr)
def test_a_turn_detection_of_any_type_is_passed_on(odd: Any) -> None:
    """(An empty or null ``type`` means ``server_vad``, the Preview default.)"""
    event = {"type": "session.update", "session": {"turn_detection": {"type": odd}}}
    [out], _ = preview_client_to_ga(event, PreviewState())
    assert out["session"]["audio"]["input"]["turn_detection"]["type"] == odd


@pytest.mark.parametrize("odd", ODD_TYPES, ids=repr)
def test_a_server_event_of_any_type_is_dropped_not_raised(odd: Any) -> None:
    """Relayed upstream events reach the same translation."""
    assert ga_server_to_preview({"type": odd, "event_id": "event_1"}, PreviewState()) == []


def test_fuzzed_preview_events_raise_only_translation_errors() -> None:
    """5,000 mutated Preview client events (rtgate.testing.fuzz): translated, or refused
    with a PreviewTranslationError — never another exception."""
    state = PreviewState()
    for text, _ in frames("preview", 5000, seed=17):
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        with contextlib.suppress(PreviewTranslationError):
            preview_client_to_ga(event, state)

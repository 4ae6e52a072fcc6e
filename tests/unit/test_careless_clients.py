"""What a careless client gets told instead of silence or a misleading message (issue 17, notes)."""

from __future__ import annotations

from rtgate.core.limits import CoreLimits
from rtgate.protocol.client_events import DecodeLimits, decode_client_event
from rtgate.protocol.errors import RealtimeError

from .helpers import Harness, assert_error, first, types, user_text

TOOL = {"type": "function", "name": "lookup", "description": "", "parameters": {"type": "object"}}


def test_items_beyond_max_items_are_deleted_with_an_event_not_silently() -> None:
    h = Harness(limits=CoreLimits(max_items=3))
    ids = [first(h.create_item(user_text(f"m{n}")), "conversation.item.added")["item"]["id"]
           for n in range(3)]
    out = h.create_item(user_text("one too many"))
    assert types(out)[-1] == "conversation.item.deleted"
    assert first(out, "conversation.item.deleted")["item_id"] == ids[0]
    assert_error(h.send({"type": "conversation.item.retrieve", "item_id": ids[0]}),
                 code="item_not_found")


def test_tool_choice_required_without_tools_is_refused_in_the_session() -> None:
    h = Harness()
    assert_error(h.update({"type": "realtime", "tool_choice": "required"}),
                 code="invalid_value", param="session.tool_choice")
    assert "session.updated" in types(h.update({"type": "realtime", "tools": [TOOL],
                                                "tool_choice": "required"}))


def test_tool_choice_required_without_tools_is_refused_in_a_response() -> None:
    h = Harness()
    assert_error(h.create_response({"tool_choice": "required"}),
                 code="invalid_value", param="response.tool_choice")
    assert "response.created" in types(h.create_response({"tool_choice": "required",
                                                          "tools": [TOOL]}))


def test_tool_choice_naming_a_missing_function_is_refused() -> None:
    h = Harness()
    assert_error(h.update({"type": "realtime", "tools": [TOOL],
                           "tool_choice": {"type": "function", "name": "other"}}),
                 code="invalid_value", param="session.tool_choice")


def test_an_integer_beyond_64_bits_is_reported_as_out_of_range() -> None:
    h = Harness()
    event = assert_error(h.update({"type": "realtime", "max_output_tokens": 2**70}),
                         code="integer_above_max_value", param="session.max_output_tokens")
    assert "64-bit" in event["error"]["message"]


def test_a_number_no_double_holds_is_reported_as_too_large_not_infinity() -> None:
    error = decode_client_event('{"type":"response.cancel","x":1' + "0" * 400 + "}",
                                DecodeLimits())
    assert isinstance(error, RealtimeError) and error.code == "invalid_json"
    assert "too large" in error.message and "infinity" not in error.message


def test_base64_audio_must_be_padded_to_whole_quads() -> None:
    h = Harness()
    assert_error(h.send({"type": "input_audio_buffer.append", "audio": "QUJD="}),
                 code="invalid_value", param="audio")


def test_pcm_appends_carry_whole_samples() -> None:
    h = Harness()
    event = assert_error(h.append(b"ABC"), code="invalid_value", param="audio")
    assert "even" in event["error"]["message"]
    assert h.append(b"ABCD") == []


def test_g711_appends_may_carry_any_byte_count() -> None:
    h = Harness()
    h.update({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert h.append(b"ABC") == []

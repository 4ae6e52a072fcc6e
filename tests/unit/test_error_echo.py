"""Errors repeat at most a short piece of the client's input (issue 17, notes).

An error used to send back a client's megabyte-long id or key in full.
"""

from __future__ import annotations

from rtgate.protocol.errors import MAX_MESSAGE_CHARS, MAX_PARAM_CHARS, RealtimeError

from .helpers import Harness, assert_error

HUGE = "A" * 1_000_000


def test_an_unknown_item_id_is_echoed_cut_short() -> None:
    h = Harness()
    event = assert_error(h.send({"type": "conversation.item.retrieve", "item_id": HUGE,
                                 "event_id": "evt_1"}), code="item_not_found", event_id="evt_1")
    assert len(event["error"]["message"]) < 200
    assert "AAAA..." in event["error"]["message"]


def test_an_unknown_parameter_name_is_echoed_cut_short() -> None:
    h = Harness()
    event = assert_error(h.send({"type": "response.cancel", HUGE: 1}), code="unknown_parameter")
    assert len(event["error"]["message"]) < 200
    assert len(event["error"]["param"]) <= MAX_PARAM_CHARS


def test_every_error_on_the_wire_is_bounded() -> None:
    wire = RealtimeError(HUGE, "invalid_value", HUGE).to_wire()
    assert len(wire["message"]) == MAX_MESSAGE_CHARS and wire["message"].endswith("...")
    assert len(wire["param"]) == MAX_PARAM_CHARS

"""MCP tools in the sans-I/O core: listing, calls inside a response, cancellation, policy."""

from __future__ import annotations

from typing import Any

from rtgate.core import effects as fx
from rtgate.core.mcp import allowed, needs_approval
from rtgate.pipeline.context import build_request

from .helpers import Harness, assert_events, checked, effects, first, user_text

QUIET, LOUD = 0.05, 0.9
TOOL = {"type": "mcp", "server_label": "srv", "server_url": "http://127.0.0.1:1/mcp", "require_approval": "never"}
LISTED = [{"name": "lookup", "input_schema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
          {"name": "write", "input_schema": {"type": "object"}}]


def listed_session(tool: dict[str, Any] | None = None) -> Harness:
    h = Harness()
    out = h.update({"type": "realtime", "output_modalities": ["text"], "tools": [tool or TOOL]})
    listing = next(e for e in effects(out) if isinstance(e, fx.ListMcpTools))
    checked(h.session.on_mcp_tools_listed(listing.item_id, LISTED))
    return h


def call_lookup(h: Harness) -> tuple[str, list[Any]]:
    h.create_item(user_text("find it"))
    out = h.create_response()
    rid = next(e for e in effects(out) if isinstance(e, fx.StartResponse)).plan.response_id
    checked(h.session.on_response_tool_call(rid, 0, "lookup", "call_1", '{"q": 1}'))
    return rid, h.done(rid, reason="tool_calls")


def test_plan_offers_listed_tools_with_approval_policy() -> None:
    """The response plan carries the listed tools; the model sees them as functions."""
    h = listed_session()
    h.create_item(user_text("hi"))
    plan = next(e for e in effects(h.create_response()) if isinstance(e, fx.StartResponse)).plan
    assert [(t["name"], t["approval"]) for t in plan.mcp_tools] == [("lookup", False), ("write", False)]
    assert [t.name for t in build_request(plan).tools] == ["lookup", "write"]


def test_model_call_runs_then_model_continues() -> None:
    """The model's call becomes an mcp_call; the result continues the same response."""
    h = listed_session()
    rid, out = call_lookup(h)
    assert_events(out, ["response.mcp_call_arguments.done", "response.mcp_call.in_progress"])
    call = next(e for e in effects(out) if isinstance(e, fx.CallMcpTools))
    assert call.response_id == rid and call.calls[0].name == "lookup" and call.calls[0].arguments == '{"q": 1}'
    out = checked(h.session.on_mcp_call_result(rid, call.calls[0].item_id, "found", None))
    assert_events(out, ["response.mcp_call.completed", "conversation.item.done", "response.output_item.done"])
    plan = next(e for e in effects(out) if isinstance(e, fx.StartResponse)).plan
    assert plan.response_id == rid and plan.tool_choice == "auto"
    messages = build_request(plan).messages
    assert messages[-1] == {"role": "tool", "tool_call_id": call.calls[0].item_id, "content": "found"}


def test_barge_in_during_a_call_cancels_it() -> None:
    """Speech during a running MCP call cancels the response: the call fails as cancelled,
    the runner is told to cancel (CancelResponse), and a late result is dropped."""
    h = listed_session()
    h.update({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    rid, out = call_lookup(h)
    item_id = next(e for e in effects(out) if isinstance(e, fx.CallMcpTools)).calls[0].item_id
    out = h.vad(0, [QUIET] * 5 + [LOUD] * 5)
    assert fx.CancelResponse(rid) in effects(out)
    failed = first(out, "response.mcp_call.failed")
    assert failed["item_id"] == item_id
    done = first(out, "response.done")["response"]
    assert done["status"] == "cancelled" and "cancelled" in done["output"][0]["error"]["message"]
    assert checked(h.session.on_mcp_call_result(rid, item_id, "late", None)) == []


def test_removed_server_is_not_offered_and_late_listing_still_completes_its_item() -> None:
    h = Harness()
    out = h.update({"type": "realtime", "tools": [TOOL]})
    listing = next(e for e in effects(out) if isinstance(e, fx.ListMcpTools))
    h.update({"type": "realtime", "tools": []})
    out = checked(h.session.on_mcp_tools_listed(listing.item_id, LISTED))
    assert_events(out, ["mcp_list_tools.completed", "conversation.item.done"])
    h.create_item(user_text("hi"))
    plan = next(e for e in effects(h.create_response()) if isinstance(e, fx.StartResponse)).plan
    assert plan.mcp_tools == []


def test_allowed_tools_and_approval_filters() -> None:
    assert [t["name"] for t in allowed({"allowed_tools": ["write"]}, LISTED)] == ["write"]
    assert [t["name"] for t in allowed({"allowed_tools": {"read_only": True}}, LISTED)] == ["lookup"]
    assert [t["name"] for t in allowed({}, LISTED)] == ["lookup", "write"]
    assert needs_approval({}, LISTED[0]) is True  # the cloud's default: always
    assert needs_approval({"require_approval": "never"}, LISTED[0]) is False
    policy = {"require_approval": {"never": {"tool_names": ["write"]}}}
    assert needs_approval(policy, LISTED[1]) is False and needs_approval(policy, LISTED[0]) is True


def test_tool_rounds_are_bounded() -> None:
    """After max_tool_rounds the model continues with tool_choice none."""
    h = listed_session()
    rid, out = call_lookup(h)
    for round_ in range(1, h.session.limits.max_tool_rounds + 1):
        call = next(e for e in effects(out) if isinstance(e, fx.CallMcpTools))
        out = checked(h.session.on_mcp_call_result(rid, call.calls[0].item_id, "x", None))
        plan = next(e for e in effects(out) if isinstance(e, fx.StartResponse)).plan
        if plan.tool_choice == "none":
            assert round_ == h.session.limits.max_tool_rounds
            return
        checked(h.session.on_response_tool_call(rid, 0, "lookup", None, "{}"))
        out = h.done(rid, reason="tool_calls")
    raise AssertionError("tool_choice never became none")

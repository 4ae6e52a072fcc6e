"""Remote MCP tools end to end: the official openai SDK against rtgate, rtgate against real
MCP servers (the ``mcp`` SDK) on loopback. Every server event is validated strictly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rtgate.pipeline.builtin import EchoLLM, ToneTTS
from rtgate.pipeline.responder import Pipeline
from rtgate.server.settings import Settings
from rtgate.testing.mcp_server import McpServers, running_mcp_servers
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, assert_error, client_for, types

pytestmark = pytest.mark.e2e

MAX_OUTPUT = 100_000
CALL_TIMEOUT_S = 3.0
TOOL_NAMES = {"add", "shout", "fail", "slow", "huge"}


@pytest.fixture(scope="module")
def mcp() -> Iterator[McpServers]:
    with running_mcp_servers() as servers:
        yield servers


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """rtgate with the builtin echo model: it calls the tool ``tool_choice`` names with
    ``{"text": <the user's last message>}`` and then says what the tool returned."""
    settings = Settings(api_keys=("sk-test",), mcp_call_timeout_s=CALL_TIMEOUT_S,
                        mcp_list_timeout_s=5.0, mcp_max_output_bytes=MAX_OUTPUT)
    with running_server(settings, profiles=lambda s: {"default": Pipeline("echo", EchoLLM(), ToneTTS())}) as h:
        yield h


def mcp_tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "tests", "server_url": url, "require_approval": "never", **extra}


async def configure(conn: Any, ev: Events, tool: dict[str, Any], **session: Any) -> list[dict[str, Any]]:
    """session.update with ``tool``; the events up to the listing's ``conversation.item.done``."""
    await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [tool],
                                       **session})
    return await ev.until("conversation.item.done")


async def ask(conn: Any, ev: Events, text: str) -> list[dict[str, Any]]:
    """A user message and a response; the events up to ``response.done``."""
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await ev.until("conversation.item.done")
    await conn.response.create()
    return await finished(ev)


async def finished(ev: Events) -> list[dict[str, Any]]:
    """The events up to ``response.done`` (the ``rate_limits.updated`` after it is read too)."""
    events = await ev.until("response.done")
    await ev.expect("rate_limits.updated")
    return events


def forced(name: str) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "tests", "name": name}


async def test_listing_emits_item_and_events(server: ServerHandle, mcp: McpServers) -> None:
    """Adding an MCP tool lists it: item added (no tools yet), in_progress, completed, item done
    with each tool's name, input_schema, description and annotations."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        events = await configure(conn, ev, mcp_tool(mcp.plain))
        assert types(events) == ["session.updated", "conversation.item.added", "mcp_list_tools.in_progress",
                                 "mcp_list_tools.completed", "conversation.item.done"]
        added, done = events[1]["item"], events[-1]["item"]
        assert added["type"] == "mcp_list_tools" and added["tools"] == [] and added["server_label"] == "tests"
        assert done["id"] == added["id"] == events[2]["item_id"] == events[3]["item_id"]
        tools = {t["name"]: t for t in done["tools"]}
        assert set(tools) == TOOL_NAMES
        assert tools["add"]["input_schema"]["required"] == ["a", "b"]
        assert tools["add"]["description"] == "Add two whole numbers."
        assert tools["add"]["annotations"]["readOnlyHint"] is True


async def test_unchanged_tool_is_not_listed_again(server: ServerHandle, mcp: McpServers) -> None:
    """A session.update that leaves the MCP tool as it was does not list it again; changing
    it does."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        tool = mcp_tool(mcp.plain)
        await configure(conn, ev, tool)
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief.", "tools": [tool]})
        await ev.expect("session.updated")
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]})
        assert (await ev.next())["type"] == "conversation.item.added"
        assert (await ev.next())["item"]["type"] == "message"
        events = await configure(conn, ev, {**tool, "allowed_tools": ["add"]})
        assert [t["name"] for t in events[-1]["item"]["tools"]] == ["add"]


async def test_allowed_tools_filters(server: ServerHandle, mcp: McpServers) -> None:
    """allowed_tools as names, and as a filter on the read-only hint."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        events = await configure(conn, ev, mcp_tool(mcp.plain, allowed_tools=["shout", "fail", "nope"]))
        assert {t["name"] for t in events[-1]["item"]["tools"]} == {"shout", "fail"}
        events = await configure(conn, ev, mcp_tool(mcp.plain, allowed_tools={"read_only": True}))
        assert [t["name"] for t in events[-1]["item"]["tools"]] == ["add"]
        events = await configure(conn, ev, mcp_tool(mcp.plain, allowed_tools={"tool_names": ["huge"]}))
        assert [t["name"] for t in events[-1]["item"]["tools"]] == ["huge"]


async def test_headers_and_authorization_reach_the_server(server: ServerHandle, mcp: McpServers) -> None:
    """authorization is sent as a bearer token, headers as given."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        mcp.seen_headers.clear()
        tool = mcp_tool(mcp.auth, authorization=mcp.token, headers={"X-Team": "blue"})
        events = await configure(conn, ev, tool)
        assert "mcp_list_tools.completed" in types(events)
        assert {t["name"] for t in events[-1]["item"]["tools"]} == TOOL_NAMES
        assert mcp.seen_headers
        assert all(h.get("x-team") == "blue" for h in mcp.seen_headers)


async def test_unauthorized_listing_fails_clearly(server: ServerHandle, mcp: McpServers) -> None:
    """A 401 fails the listing: mcp_list_tools.failed, the item done with no tools, an error
    naming the server and the status; the session goes on."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        events = await configure(conn, ev, mcp_tool(mcp.auth, authorization="wrong"))
        assert types(events)[-2:] == ["mcp_list_tools.failed", "conversation.item.done"]
        assert events[-1]["item"]["tools"] == []
        error = await ev.next()
        assert_error(error, "mcp_list_tools_failed")
        assert "'tests'" in error["error"]["message"] and "401" in error["error"]["message"]
        assert "wrong" not in error["error"]["message"]
        events = await ask(conn, ev, "still there")
        assert events[-1]["response"]["status"] == "completed"


async def test_unreachable_server_fails_clearly(server: ServerHandle, mcp: McpServers) -> None:
    """Nothing listening: mcp_list_tools.failed and an error saying the server is unreachable."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        events = await configure(conn, ev, mcp_tool("http://127.0.0.1:9/mcp"))
        assert "mcp_list_tools.failed" in types(events)
        error = await ev.next()
        assert_error(error, "mcp_list_tools_failed")
        assert "unreachable" in error["error"]["message"]


async def test_sse_only_server_is_listed(server: ServerHandle, mcp: McpServers) -> None:
    """A server that speaks only the SSE transport is listed through it."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        events = await configure(conn, ev, mcp_tool(mcp.sse))
        assert "mcp_list_tools.completed" in types(events)
        assert {t["name"] for t in events[-1]["item"]["tools"]} == TOOL_NAMES


async def test_forced_call_runs_and_model_continues(server: ServerHandle, mcp: McpServers) -> None:
    """tool_choice {type: mcp, name}: an mcp_call item with argument deltas, in_progress,
    completed with the output; the model then answers from the result in the same response."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await configure(conn, ev, mcp_tool(mcp.plain), tool_choice=forced("shout"))
        events = await ask(conn, ev, "hello there")
        seq = [t for t in types(events) if not t.endswith(".delta")]
        assert seq[:9] == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.mcp_call_arguments.done", "response.mcp_call.in_progress",
            "response.mcp_call.completed", "conversation.item.done", "response.output_item.done",
            "response.output_item.added"]
        assert "response.mcp_call_arguments.delta" in types(events)
        call = next(e for e in events if e["type"] == "response.output_item.done")["item"]
        assert call["type"] == "mcp_call" and call["name"] == "shout" and call["server_label"] == "tests"
        assert call["arguments"] == '{"text": "hello there"}'
        assert call["output"] == "HELLO THERE"
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert [o["type"] for o in done["output"]] == ["mcp_call", "message"]
        assert done["output"][1]["content"][0]["text"] == "The tool returned: HELLO THERE"


async def test_raising_tool_fails_the_call_not_the_response(server: ServerHandle, mcp: McpServers) -> None:
    """A tool that raises: mcp_call.failed with a tool_execution_error; the model goes on."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await configure(conn, ev, mcp_tool(mcp.plain), tool_choice=forced("fail"))
        events = await ask(conn, ev, "please fail")
        assert "response.mcp_call.failed" in types(events)
        call = events[-1]["response"]["output"][0]
        assert call["error"]["type"] == "tool_execution_error"
        assert "output" not in call or call["output"] is None
        assert events[-1]["response"]["status"] == "completed"
        assert events[-1]["response"]["output"][1]["content"][0]["text"].startswith("The tool returned: Error:")


async def test_oversized_output_is_refused(server: ServerHandle, mcp: McpServers) -> None:
    """Output over mcp_max_output_bytes fails the call with a message naming the limit."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await configure(conn, ev, mcp_tool(mcp.plain), tool_choice=forced("huge"))
        events = await ask(conn, ev, "big")
        call = events[-1]["response"]["output"][0]
        assert call["error"]["type"] == "tool_execution_error"
        assert str(MAX_OUTPUT) in call["error"]["message"] and "mcp_max_output_bytes" in call["error"]["message"]


async def test_slow_tool_times_out(server: ServerHandle, mcp: McpServers) -> None:
    """A call past mcp_call_timeout_s fails with a protocol_error (request timeout)."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await configure(conn, ev, mcp_tool(mcp.plain), tool_choice=forced("slow"))
        events = await ask(conn, ev, "take your time")
        call = events[-1]["response"]["output"][0]
        assert call["error"] == {"type": "protocol_error", "code": -32001, "message":
                                 f"MCP server 'tests' did not answer tools/call within {CALL_TIMEOUT_S:g} s"}


async def test_cancel_during_slow_call(server: ServerHandle, mcp: McpServers) -> None:
    """response.cancel while a tool runs: the call fails as cancelled, the response ends
    cancelled, and the session answers the next response."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await configure(conn, ev, mcp_tool(mcp.plain), tool_choice=forced("slow"))
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "slowly"}]})
        await ev.until("conversation.item.done")
        await conn.response.create()
        await ev.until("response.mcp_call.in_progress")
        await conn.response.cancel()
        events = await finished(ev)
        assert types(events)[0] == "response.mcp_call.failed"
        assert events[-1]["response"]["status"] == "cancelled"
        assert "cancelled" in events[-1]["response"]["output"][0]["error"]["message"]
        await conn.session.update(session={"type": "realtime", "tool_choice": "none"})
        await ev.expect("session.updated")
        events = await ask(conn, ev, "again")
        assert events[-1]["response"]["status"] == "completed"


async def test_approval_round_trip(server: ServerHandle, mcp: McpServers) -> None:
    """require_approval always: an mcp_approval_request item instead of a call; an approving
    mcp_approval_response makes the next response run the call; a refusal skips it."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        tool = mcp_tool(mcp.plain, require_approval="always")
        await configure(conn, ev, tool, tool_choice=forced("shout"))
        calls_before = len(mcp.calls)
        events = await ask(conn, ev, "quiet please")
        request = events[-1]["response"]["output"][0]
        assert request["type"] == "mcp_approval_request" and request["name"] == "shout"
        assert request["arguments"] == '{"text": "quiet please"}'
        assert "response.mcp_call.in_progress" not in types(events)
        assert len(mcp.calls) == calls_before
        await conn.session.update(session={"type": "realtime", "tool_choice": "auto"})
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={
            "type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True})
        added = await ev.expect("conversation.item.added")
        assert added["item"]["type"] == "mcp_approval_response"
        await ev.expect("conversation.item.done")
        await conn.response.create()
        events = await finished(ev)
        output = events[-1]["response"]["output"]
        assert output[0]["type"] == "mcp_call" and output[0]["approval_request_id"] == request["id"]
        assert output[0]["output"] == "QUIET PLEASE"
        assert output[1]["content"][0]["text"] == "The tool returned: QUIET PLEASE"

        await conn.session.update(session={"type": "realtime", "tool_choice": forced("shout")})
        await ev.expect("session.updated")
        events = await ask(conn, ev, "no thanks")
        request = events[-1]["response"]["output"][0]
        await conn.session.update(session={"type": "realtime", "tool_choice": "auto"})
        await ev.expect("session.updated")
        await conn.conversation.item.create(item={
            "type": "mcp_approval_response", "approval_request_id": request["id"], "approve": False})
        await ev.until("conversation.item.done")
        calls_before = len(mcp.calls)
        await conn.response.create()
        events = await finished(ev)
        output = events[-1]["response"]["output"]
        assert [o["type"] for o in output] == ["message"]
        assert output[0]["content"][0]["text"] == "The tool returned: The user declined this call."
        assert len(mcp.calls) == calls_before


async def test_approval_filter_never_for_read_only(server: ServerHandle, mcp: McpServers) -> None:
    """require_approval {never: {read_only: true}}: the read-only tool runs at once."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        tool = mcp_tool(mcp.plain, require_approval={"never": {"read_only": True}})
        await configure(conn, ev, tool, tool_choice=forced("add"))
        events = await ask(conn, ev, "sum")
        assert events[-1]["response"]["output"][0]["type"] == "mcp_call"
        await conn.session.update(session={"type": "realtime", "tool_choice": forced("shout")})
        await ev.expect("session.updated")
        events = await ask(conn, ev, "loud")
        assert events[-1]["response"]["output"][0]["type"] == "mcp_approval_request"


async def test_approval_response_must_name_a_request(server: ServerHandle, mcp: McpServers) -> None:
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.send({"type": "conversation.item.create", "event_id": "evt_a", "item": {
            "type": "mcp_approval_response", "approval_request_id": "item_nope", "approve": True}})
        assert_error(await ev.next(), "invalid_value", event_id="evt_a", param="item.approval_request_id")


@pytest.mark.parametrize(("tool", "code", "param"), [
    ({"type": "mcp", "server_label": "mail", "connector_id": "connector_gmail"}, "invalid_value",
     "session.tools[0].connector_id"),
    ({"type": "mcp", "server_label": "t", "tunnel_id": "tun_1", "server_url": "http://127.0.0.1:9/"},
     "invalid_value", "session.tools[0].tunnel_id"),
    ({"type": "mcp", "server_label": "t"}, "missing_required_parameter", "session.tools[0].server_url"),
    ({"type": "mcp", "server_label": "t", "server_url": "file:///etc/passwd"}, "invalid_value",
     "session.tools[0].server_url"),
    ({"type": "mcp", "server_label": "t", "server_url": "http://x/", "bogus": 1}, "unknown_parameter",
     "session.tools[0].bogus"),
])
async def test_unusable_mcp_tools_are_refused(server: ServerHandle, tool: dict[str, Any], code: str,
                                              param: str) -> None:
    """Cloud connectors and tunnels, a missing or non-HTTP server_url: a clear error, nothing
    applied, and the session goes on."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.send({"type": "session.update", "event_id": "evt_t",
                         "session": {"type": "realtime", "tools": [tool]}})
        assert_error(await ev.next(), code, event_id="evt_t", param=param)
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        assert (await ev.expect("session.updated"))["session"]["tools"] == []


async def test_tool_choice_must_name_an_mcp_server(server: ServerHandle, mcp: McpServers) -> None:
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.send({"type": "session.update", "event_id": "evt_c", "session": {
            "type": "realtime", "tools": [mcp_tool(mcp.plain)],
            "tool_choice": {"type": "mcp", "server_label": "other"}}})
        assert_error(await ev.next(), "invalid_value", event_id="evt_c", param="session.tool_choice")

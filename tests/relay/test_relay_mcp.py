"""MCP tools through the relay: the gateway passes them through untouched, the upstream
(the cloud; here a second rtgate) lists and calls them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtgate.testing.mcp_server import McpServers, running_mcp_servers

from .conftest import Relay
from .test_relay_sdk import Events, client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mcp() -> Iterator[McpServers]:
    with running_mcp_servers() as servers:
        yield servers


async def test_mcp_listing_happens_upstream_only(relay: Relay, mcp: McpServers) -> None:
    """One mcp_list_tools item, from the upstream: the gateway neither lists the tool itself
    nor changes the update."""
    async with client(relay).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        assert (await ev.next())["type"] == "session.created"
        tool = {"type": "mcp", "server_label": "tests", "server_url": mcp.plain, "require_approval": "never",
                "allowed_tools": ["add"]}
        await conn.session.update(session={"type": "realtime", "tools": [tool]})
        events = await ev.until("conversation.item.done")
        kinds = [e["type"] for e in events]
        assert kinds == ["session.updated", "conversation.item.added", "mcp_list_tools.in_progress",
                         "mcp_list_tools.completed", "conversation.item.done"]
        assert [t["name"] for t in events[-1]["item"]["tools"]] == ["add"]
        assert events[0]["session"]["tools"][0]["server_url"] == mcp.plain

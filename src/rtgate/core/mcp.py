"""Remote MCP tools in the session core (pure): listings, what the model is offered, approvals.

A session's ``{"type": "mcp", ...}`` tools are listed when a ``session.update`` adds or
changes one (an unchanged tool is not listed again). Listing table, per ``mcp_list_tools``
item:

===========  ==================  ===========  ===============================================
state        input               next         emits
===========  ==================  ===========  ===============================================
(none)       tool added/changed  in_progress  ``conversation.item.added`` (``tools: []``),
                                              ``mcp_list_tools.in_progress``, effect
                                              :class:`~rtgate.core.effects.ListMcpTools`
in_progress  listed              completed    ``mcp_list_tools.completed``,
                                              ``conversation.item.done`` with the tools
in_progress  failed              failed       ``mcp_list_tools.failed``,
                                              ``conversation.item.done``, ``error``
                                              (``mcp_list_tools_failed``)
===========  ==================  ===========  ===============================================

The model is offered the tools of completed listings whose tool is still in the session,
after ``allowed_tools``; each carries whether ``require_approval`` asks the user first
(the cloud's default: ``always``). Calls themselves live in the response
(:mod:`~rtgate.core.responses`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..protocol.errors import RealtimeError, echo
from . import effects as fx
from .conversation import Conversation, StoredItem
from .ids import IdFactory


@dataclass(slots=True)
class McpListing:
    """One server's listing: its tool object as configured, its item, what it returned."""

    tool: dict[str, Any]
    item_id: str
    status: str = "in_progress"
    tools: list[dict[str, Any]] = field(default_factory=list)


def check_mcp_tools(tools: Sequence[Any], param: str) -> None:
    """Refuse MCP tools rtgate cannot reach: cloud connectors and tunnels (``connector_id``,
    ``tunnel_id``), no ``server_url``, a URL that is not http(s); two tools with one label."""
    labels: set[str] = set()
    for index, tool in enumerate(tools):
        if getattr(tool, "type", None) != "mcp":
            continue
        where = f"{param}[{index}]"
        for cloud in ("connector_id", "tunnel_id"):
            value = getattr(tool, cloud)
            if value is not None:
                raise RealtimeError(
                    f"Invalid value: '{echo(value)}'. {cloud} names an OpenAI-hosted connection, "
                    "which this server cannot reach; give the MCP server's server_url instead.",
                    "invalid_value", f"{where}.{cloud}")
        if tool.server_url is None:
            raise RealtimeError(
                f"Missing required parameter: '{where}.server_url'.",
                "missing_required_parameter", f"{where}.server_url")
        parts = urlsplit(tool.server_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RealtimeError(
                f"Invalid value: '{echo(tool.server_url)}'. server_url must be an http:// or "
                "https:// URL.", "invalid_value", f"{where}.server_url")
        if tool.server_label in labels:
            raise RealtimeError(
                f"Invalid value: '{echo(tool.server_label)}'. Each MCP tool needs its own "
                "server_label.", "invalid_value", f"{where}.server_label")
        labels.add(tool.server_label)


def _matches(spec: dict[str, Any] | None, tool: dict[str, Any]) -> bool:
    """Whether ``tool`` (as listed) matches an ``McpToolFilter``: by name or read-only hint."""
    if not spec:
        return False
    names = spec.get("tool_names")
    if names is not None and tool["name"] in names:
        return True
    read_only = spec.get("read_only")
    hint = bool((tool.get("annotations") or {}).get("readOnlyHint"))
    return read_only is not None and hint == read_only


def allowed(config: dict[str, Any], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listed ``tools`` that ``allowed_tools`` lets through (all when unset)."""
    spec = config.get("allowed_tools")
    if spec is None:
        return tools
    if isinstance(spec, list):
        return [t for t in tools if t["name"] in spec]
    return [t for t in tools if _matches(spec, t)]


def needs_approval(config: dict[str, Any], tool: dict[str, Any]) -> bool:
    """``require_approval`` for one tool: ``never``, ``always`` (the default), or the filter
    (``never`` matches first, then ``always``; a tool neither names needs approval)."""
    policy = config.get("require_approval")
    if policy is None or policy == "always":
        return True
    if policy == "never":
        return False
    return not _matches(policy.get("never"), tool)


class McpTools:
    """The session's MCP listings; emits through the session's ``emit`` and ``effect``."""

    def __init__(
        self,
        conversation: Conversation,
        ids: IdFactory,
        emit: Callable[..., None],
        effect: Callable[[fx.Effect], None],
    ) -> None:
        self._conversation = conversation
        self._ids = ids
        self._emit = emit
        self._effect = effect
        self.servers: dict[str, McpListing] = {}
        """Current listing per server label."""
        self._items: dict[str, McpListing] = {}
        """Listings still running, by item id (a superseded one still gets its events)."""
        self.answered: set[str] = set()
        """Approval request ids whose answer a response has acted on."""

    def sync(self, tools: Sequence[Any]) -> None:
        """List the MCP tools of ``tools`` that are new or changed; forget removed ones."""
        wanted = {t.server_label: t.model_dump(exclude_none=True) for t in tools if t.type == "mcp"}
        for label in list(self.servers):
            if label not in wanted:
                del self.servers[label]
        for label, tool in wanted.items():
            current = self.servers.get(label)
            if current is not None and current.tool == tool:
                continue
            listing = McpListing(tool=tool, item_id=self._ids.item())
            self.servers[label] = listing
            self._items[listing.item_id] = listing
            wire = {"id": listing.item_id, "type": "mcp_list_tools", "server_label": label, "tools": []}
            previous = self._conversation.insert(StoredItem(wire=wire))
            self._emit("conversation.item.added", previous_item_id=previous, item=dict(wire))
            self._emit("mcp_list_tools.in_progress", item_id=listing.item_id)
            self._effect(fx.ListMcpTools(listing.item_id, tool))

    def listed(self, item_id: str, tools: list[dict[str, Any]]) -> None:
        listing = self._items.pop(item_id, None)
        if listing is None:
            return
        listing.status = "completed"
        listing.tools = allowed(listing.tool, tools)
        self._emit("mcp_list_tools.completed", item_id=item_id)
        self._item_done(item_id, listing.tools)

    def failed(self, item_id: str, message: str) -> None:
        listing = self._items.pop(item_id, None)
        if listing is None:
            return
        listing.status = "failed"
        self._emit("mcp_list_tools.failed", item_id=item_id)
        self._item_done(item_id, [])
        label = listing.tool["server_label"]
        self._emit("error", error=RealtimeError(
            f"Error retrieving tool list from MCP server '{label}': {message}",
            "mcp_list_tools_failed", "tools", type="server_error").to_wire())

    def _item_done(self, item_id: str, tools: list[dict[str, Any]]) -> None:
        if item_id not in self._conversation:
            return  # deleted (or evicted) meanwhile
        stored = self._conversation.get(item_id)
        stored.wire["tools"] = tools
        self._emit("conversation.item.done", previous_item_id=self._conversation.previous_id(item_id),
                   item=dict(stored.wire))

    def offered(self, tools: Sequence[Any], param: str) -> list[dict[str, Any]]:
        """The MCP tools the model may call for a response whose tools are ``tools``:
        ``{server_label, name, description, input_schema, approval}`` each. An MCP tool a
        response brings that the session has not listed (same label, same settings) is
        refused: listings happen at ``session.update``."""
        out: list[dict[str, Any]] = []
        for index, tool in enumerate(tools):
            if tool.type != "mcp":
                continue
            listing = self.servers.get(tool.server_label)
            if listing is None or listing.tool != tool.model_dump(exclude_none=True):
                raise RealtimeError(
                    f"Invalid value: '{echo(tool.server_label)}'. MCP tools are listed when "
                    "session.update adds them; add this server to the session's tools first.",
                    "invalid_value", f"{param}[{index}]")
            for listed in listing.tools:
                out.append({
                    "server_label": tool.server_label,
                    "name": listed["name"],
                    "description": listed.get("description") or "",
                    "input_schema": listed.get("input_schema") or {"type": "object"},
                    "approval": needs_approval(listing.tool, listed),
                })
        return out

    def server(self, label: str) -> dict[str, Any] | None:
        """The tool object of server ``label`` as configured now (``None``: removed)."""
        listing = self.servers.get(label)
        return listing.tool if listing is not None else None

    def approvals(self) -> list[tuple[dict[str, Any], bool]]:
        """Answered approval requests no response has acted on yet: ``(request wire,
        approve)`` each, oldest first; they count as acted on from now."""
        requests = {i.id: i.wire for i in self._conversation.items()
                    if i.wire.get("type") == "mcp_approval_request"}
        out = []
        for item in self._conversation.items():
            wire = item.wire
            request_id = wire.get("approval_request_id")
            if wire.get("type") != "mcp_approval_response" or request_id in self.answered:
                continue
            request = requests.get(str(request_id))
            if request is not None:
                self.answered.add(str(request_id))
                out.append((request, bool(wire.get("approve"))))
        return out

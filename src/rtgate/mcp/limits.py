"""Bounds on MCP traffic (no SDK import: the settings read it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class McpLimits:
    """Bounds on MCP traffic; each is a server setting (``mcp_*``)."""

    list_timeout_s: float = 15.0
    """Longest a tool listing may take, connection included."""
    call_timeout_s: float = 60.0
    """Longest one tool call may take, connection included."""
    max_output_bytes: int = 1024 * 1024
    """Largest tool output (UTF-8 bytes) handed to the model; a bigger one fails the call."""
    max_tools: int = 128
    """Most tools kept from one server's listing."""

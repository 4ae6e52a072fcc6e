"""Limits the session core enforces; every one is a named setting with a unit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreLimits:
    session_lifetime_s: float = 3600.0
    """Maximum session duration; then ``session_expired`` and close (the cloud: 60 min,
    docs/protocol.md, Limits)."""
    min_commit_ms: float = 100.0
    """Audio needed for ``input_audio_buffer.commit`` (``input_audio_buffer_commit_empty``)."""
    max_input_buffer_ms: float = 15 * 60 * 1000.0
    """Uncommitted input audio kept; older audio is dropped from the front."""
    max_items: int = 2000
    """Conversation items kept; the oldest leave the model's context beyond this."""
    max_conversation_audio_bytes: int = 64 * 1024 * 1024
    """Audio bytes kept in conversation items for retrieve/truncate; oldest audio dropped first."""
    max_out_of_band_responses: int = 4
    """Concurrent ``conversation: "none"`` responses per session."""
    max_tool_rounds: int = 4
    """MCP call rounds in one response; after that the model answers without tools."""
    max_image_bytes: int = 10 * 1024 * 1024
    """Decoded size of one ``input_image``; a bigger one is refused (``invalid_value``)."""

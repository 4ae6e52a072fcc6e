"""Reading a relayed frame's event type without decoding the frame."""

from __future__ import annotations

import orjson

__all__ = ["frame_type"]


def frame_type(frame: str | bytes) -> str | None:
    """The top-level ``type`` of a JSON event without parsing the whole frame.

    Audio frames are large; the type is found by a scan that stops at the first ``"type"``
    key and is trusted only when no nested object opens before it, else the frame is parsed.
    """
    if isinstance(frame, bytes):
        return None
    at = frame.find('"type"')
    if at > 0 and frame.find("{", 1, at) == -1:
        start = frame.find('"', at + 6)
        end = frame.find('"', start + 1)
        if 0 < start < at + 10 and end > start:
            return frame[start + 1 : end]
    try:
        event = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else None

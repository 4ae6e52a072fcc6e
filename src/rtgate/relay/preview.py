"""The Preview (beta) dialect in front of the relay (issue 4; docs/protocol.md, Preview dialect).

A Preview client → rtgate → GA upstream: each Preview client frame is translated to GA
before it is forwarded, each GA upstream frame back to Preview before it reaches the
client, with the same pure functions as the local bridge
(:mod:`rtgate.transport.preview_bridge`) and the same rules:

1. A frame that is not a JSON object, and ``input_audio_buffer.append`` (same shape in
   both dialects, the bulk of the traffic), are forwarded unchanged — never re-encoded.
2. A Preview value with no GA form is answered with an ``error`` event carrying the
   client's ``event_id``; nothing is forwarded for it.
3. A dropped Preview field is logged once per field path per connection (path and reason
   only), never sent as an event.
4. GA-only server events are dropped and counted.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..protocol.errors import RealtimeError
from ..protocol.preview import (
    MAX_LOGGED_NOTICES,
    BridgeStats,
    PreviewState,
    PreviewTranslationError,
    ga_server_to_preview,
    preview_client_to_ga,
)
from .frames import frame_type

log = logging.getLogger("rtgate.relay.preview")

_APPEND = "input_audio_buffer.append"


class PreviewDialect:
    """Translates one Preview connection's frames to and from GA."""

    def __init__(self, state: PreviewState, label: str = "") -> None:
        self.state = state
        self.stats = BridgeStats()
        self._label = label

    def to_upstream(self, frame: str | bytes) -> tuple[list[str | bytes], RealtimeError | None]:
        """GA frames to forward for one Preview client frame, or the error to answer it with."""
        self.stats.events_in += 1
        if frame_type(frame) == _APPEND:
            return [frame], None  # the bulk of the traffic: not parsed, not re-encoded
        try:
            event: Any = orjson.loads(frame)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or event.get("type") == _APPEND:
            return [frame], None
        try:
            ga_events, notices = preview_client_to_ga(event, self.state)
        except PreviewTranslationError as exc:
            self.stats.translation_errors += 1
            event_id = event.get("event_id")
            return [], RealtimeError(
                exc.message, exc.code, exc.param, event_id=event_id if isinstance(event_id, str) else None
            )
        for notice in notices:
            if len(self.stats.notices) >= MAX_LOGGED_NOTICES:
                self.stats.notices_suppressed += 1
                continue
            self.stats.notices[notice.param] += 1
            log.warning("relayed session %s: %.300s", self._label, notice.message)
        return [orjson.dumps(e).decode() for e in ga_events], None

    def to_client(self, text: str | bytes) -> list[str]:
        """Preview frames for one GA upstream frame (zero, one or two)."""
        try:
            event = orjson.loads(text)
            translated = ga_server_to_preview(event, self.state)
        except Exception:
            # A translation bug (or a malformed upstream frame) costs one event, not the session.
            log.exception("relayed session %s: could not translate an upstream frame; dropped", self._label)
            self.state.dropped_server_events["untranslatable"] += 1
            return []
        self.stats.events_out += len(translated)
        return [orjson.dumps(out).decode() for out in translated]

    def summary(self) -> str:
        dropped = dict(self.state.dropped_server_events)
        return (
            f"preview: {self.stats.events_in} in, {self.stats.events_out} out, "
            f"{len(self.stats.notices) + self.stats.notices_suppressed} dropped fields, "
            f"{self.stats.translation_errors} untranslatable events, "
            f"GA-only events dropped {dropped or 'none'}"
        )

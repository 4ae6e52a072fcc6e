"""The Preview (beta) bridge at the transport edge (issue 4; docs/protocol.md, Preview dialect).

A connection that speaks Preview (``OpenAI-Beta: realtime=v1`` or the
``openai-beta.realtime-v1`` subprotocol) runs the same GA :class:`SessionRunner` as any
other; this module only translates at its two edges, with the pure functions of
:mod:`rtgate.protocol.preview`:

* outbound, :class:`PreviewChannel` wraps the real channel: every GA frame the runner
  writes is parsed, translated by ``ga_server_to_preview`` and sent as zero, one or two
  Preview frames;
* inbound, :meth:`PreviewBridge.receive_text` parses a Preview frame, translates it by
  ``preview_client_to_ga`` and feeds each GA event to ``runner.receive_text``.

Rules:

1. A frame that is not a JSON object goes to the runner unchanged, so the GA decoder
   answers it with its own ``invalid_json`` error, as for a GA client.
2. ``input_audio_buffer.append`` has the same shape in both dialects and carries the
   bulk of the traffic; its raw frame goes to the runner without being re-encoded.
3. A Preview value with no GA form (:class:`PreviewTranslationError`) is answered with a
   GA ``error`` event (same wire shape in Preview) carrying the client's ``event_id``;
   the event is not applied.
4. A Preview field with no GA equivalent is dropped by the translation and reported as a
   :class:`~rtgate.protocol.preview.Notice`, once per field per connection. The bridge logs
   the notice (field path and reason only: never values, content or keys) and counts it;
   it sends nothing to the client, because a Preview client treats every ``error`` event
   as a failure and the protocol has no warning event.

Cost: outbound, each GA frame is parsed again (``orjson``) because the runner hands the
channel encoded text: one ``orjson.loads`` and one ``orjson.dumps`` per event, about 1 µs
for a text delta (measured), more for audio deltas in proportion to the base64 string. That
is acceptable: the translation itself costs more (about 14 µs a delta, most of it its
defensive ``deepcopy``). Inbound, control events are parsed twice (here and by the GA
decoder) and re-encoded once; appends are parsed twice and never re-encoded.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..protocol.errors import RealtimeError
from ..protocol.preview import (
    MAX_LOGGED_NOTICES,
    BridgeStats,
    Notice,
    PreviewState,
    PreviewTranslationError,
    ga_server_to_preview,
    preview_client_to_ga,
)
from .connection import Channel, SessionRunner

log = logging.getLogger("rtgate.preview")

__all__ = ["BridgeStats", "PreviewBridge", "PreviewChannel"]

# Same name and shape in both dialects and by far the most frequent event.
_PASSTHROUGH_FAST = "input_audio_buffer.append"


class PreviewChannel:
    """A :class:`~rtgate.transport.connection.Channel` that speaks Preview to the client.

    ``send_text`` takes a GA server event (JSON text) and sends what a Preview server
    would have sent for it; GA-only events send nothing (counted in
    ``state.dropped_server_events``).
    """

    def __init__(self, inner: Channel, state: PreviewState, stats: BridgeStats | None = None) -> None:
        self._inner = inner
        self.state = state
        self.stats = stats if stats is not None else BridgeStats()

    async def send_text(self, text: str) -> None:
        event = orjson.loads(text)
        try:
            translated = ga_server_to_preview(event, self.state)
        except Exception:
            # A translation bug costs the client one event, not the session.
            log.exception("could not translate a GA %r event to Preview; dropped", event.get("type"))
            self.state.dropped_server_events[str(event.get("type"))] += 1
            return
        for out in translated:
            await self._inner.send_text(orjson.dumps(out).decode())
            self.stats.events_out += 1

    async def close(self, code: int, reason: str) -> None:
        await self._inner.close(code, reason)


class PreviewBridge:
    """Feeds Preview client frames to a GA :class:`SessionRunner`; see the module rules."""

    def __init__(self, runner: SessionRunner, channel: PreviewChannel) -> None:
        # The channel is the runner's outbound edge; both edges share its state and counters.
        self.runner = runner
        self.state = channel.state
        self.stats = channel.stats

    async def receive_text(self, frame: str | bytes) -> None:
        """Handle one Preview client frame (see :meth:`handle_text`)."""
        self.handle_text(frame)

    def handle_text(self, frame: str | bytes) -> None:
        """Handle one Preview client frame; never awaits (``SessionRunner.handle_text``)."""
        self.stats.events_in += 1
        try:
            event: Any = orjson.loads(frame)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or event.get("type") == _PASSTHROUGH_FAST:
            self.runner.handle_text(frame)
            return
        try:
            ga_events, notices = preview_client_to_ga(event, self.state)
        except PreviewTranslationError as exc:
            self._report(exc, event.get("event_id"))
            return
        for notice in notices:
            self._notice(notice)
        for ga_event in ga_events:
            self.runner.handle_text(orjson.dumps(ga_event))

    def _report(self, exc: PreviewTranslationError, event_id: Any) -> None:
        self.stats.translation_errors += 1
        error = RealtimeError(
            exc.message,
            exc.code,
            exc.param,
            event_id=event_id if isinstance(event_id, str) else None,
        )
        self.runner.apply(self.runner.session.report(error))

    def _notice(self, notice: Notice) -> None:
        # Field paths come from the client's keys: bound what one connection can log.
        if len(self.stats.notices) >= MAX_LOGGED_NOTICES:
            self.stats.notices_suppressed += 1
            return
        self.stats.notices[notice.param] += 1
        # Notice messages are built from the field path and a fixed reason: no values.
        log.warning("session %s: %.300s", self.runner.session.id, notice.message)

    def summary(self) -> str:
        """One log-safe line: counters and dropped GA-only event types, no content."""
        dropped = dict(self.state.dropped_server_events)
        return (
            f"preview bridge: {self.stats.events_in} in, {self.stats.events_out} out, "
            f"{len(self.stats.notices) + self.stats.notices_suppressed} dropped fields, "
            f"{self.stats.translation_errors} untranslatable events, "
            f"GA-only events dropped {dropped or 'none'}"
        )

"""The spans of one session's turns (see :mod:`rtgate.tracing`)."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Span
from opentelemetry.trace import Status, StatusCode

DEFAULT_WORKFLOW = "Realtime Session"
"""``workflow_name`` of ``tracing: "auto"`` (the Agents SDK's default name)."""


def _ns() -> int:
    return time.time_ns()


class TurnTracer:
    """Spans of one session's responses, fed with its server events (:meth:`on_event`)."""

    def __init__(self, tracer: trace.Tracer, session_id: str) -> None:
        self._tracer = tracer
        self._session_id = session_id
        self._speech_stopped: int | None = None
        self._responses: dict[str, Span] = {}
        self._firsts: dict[str, set[str]] = {}
        self._calls: dict[str, Span] = {}
        self._call_items: dict[str, tuple[str, dict[str, Any]]] = {}

    def on_event(self, event: dict[str, Any], tracing: Any) -> None:
        """Record ``event`` if it matters; ``tracing`` is the session's setting (``None``:
        off, ``"auto"``, or ``{workflow_name, group_id, metadata}``)."""
        kind = event["type"]
        if kind == "input_audio_buffer.speech_stopped":
            self._speech_stopped = _ns()
        elif kind == "response.created" and tracing is not None:
            self._start(event["response"]["id"], tracing)
        elif kind == "response.done":
            self._end(event["response"])
        elif kind == "response.output_item.added" and event["item"].get("type") == "mcp_call":
            self._call_items[event["item"]["id"]] = (event["response_id"], event["item"])
        elif kind == "response.mcp_call.in_progress":
            self._start_call(event["item_id"])
        elif kind in ("response.mcp_call.completed", "response.mcp_call.failed"):
            self._end_call(event["item_id"], failed=kind.endswith("failed"))
        elif kind == "response.function_call_arguments.done":
            self._mark(event["response_id"], "function_call", {"name": event.get("name") or ""})
        elif kind == "conversation.item.input_audio_transcription.completed":
            for span in self._responses.values():
                span.add_event("stt.completed", {"item_id": event["item_id"]})
        elif kind in ("response.output_text.delta", "response.output_audio_transcript.delta"):
            self._first(event["response_id"], "llm.first_token")
        elif kind == "response.output_audio.delta":
            self._first(event["response_id"], "tts.first_chunk")

    def llm_first_token(self, response_id: str) -> None:
        """The model produced its first token (earlier than any event shows it when speaking)."""
        self._first(response_id, "llm.first_token")

    def _start(self, response_id: str, tracing: Any) -> None:
        if hasattr(tracing, "model_dump"):
            tracing = tracing.model_dump()
        settings = tracing if isinstance(tracing, dict) else {}
        attributes: dict[str, Any] = {
            "rtgate.session_id": self._session_id,
            "rtgate.response_id": response_id,
            "realtime.workflow_name": settings.get("workflow_name") or DEFAULT_WORKFLOW,
        }
        if settings.get("group_id"):
            attributes["realtime.group_id"] = settings["group_id"]
        for key, value in (settings.get("metadata") or {}).items():
            plain = isinstance(value, str | int | float | bool)
            attributes[f"realtime.metadata.{key}"] = value if plain else str(value)
        start = self._speech_stopped or _ns()
        span = self._tracer.start_span("realtime.response", attributes=attributes, start_time=start)
        if self._speech_stopped is not None:
            span.add_event("vad.speech_stopped", timestamp=self._speech_stopped)
        self._speech_stopped = None
        self._responses[response_id] = span  # type: ignore[assignment]
        self._firsts[response_id] = set()

    def _first(self, response_id: str, name: str) -> None:
        seen = self._firsts.get(response_id)
        if seen is not None and name not in seen:
            seen.add(name)
            self._responses[response_id].add_event(name)

    def _mark(self, response_id: str, name: str, attributes: dict[str, Any]) -> None:
        span = self._responses.get(response_id)
        if span is not None:
            span.add_event(name, attributes)

    def _start_call(self, item_id: str) -> None:
        response_id, item = self._call_items.get(item_id, ("", {}))
        parent = self._responses.get(response_id)
        if parent is None:
            return
        context = trace.set_span_in_context(parent)
        self._calls[item_id] = self._tracer.start_span(  # type: ignore[assignment]
            "mcp.call", context=context,
            attributes={"mcp.server_label": item.get("server_label", ""), "mcp.tool": item.get("name", "")})

    def _end_call(self, item_id: str, *, failed: bool) -> None:
        self._call_items.pop(item_id, None)
        span = self._calls.pop(item_id, None)
        if span is not None:
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    def _end(self, response: dict[str, Any]) -> None:
        span = self._responses.pop(response["id"], None)
        self._firsts.pop(response["id"], None)
        if span is None:
            return
        span.set_attribute("rtgate.response.status", response["status"])
        if response["status"] == "failed":
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def close(self) -> None:
        """The session ended: end what is still open."""
        for span in [*self._calls.values(), *self._responses.values()]:
            span.end()
        self._calls.clear()
        self._responses.clear()

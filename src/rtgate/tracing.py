"""OpenTelemetry traces of each turn, for sessions that set ``tracing`` (docs/fields.md).

With ``otlp_traces_endpoint`` configured, the server installs one tracer provider per
process (:func:`configure`) that exports over OTLP/HTTP in batches; without it nothing is
recorded and ``tracing`` is accepted with no effect. A session's :class:`TurnTracer`
derives spans from the server events it sends, so the session core stays unaware of
tracing:

- ``realtime.response`` — one span per response, from the end of the user's speech
  (``input_audio_buffer.speech_stopped``) when the turn began with speech, else from
  ``response.created``, to ``response.done``; attributes ``rtgate.session_id``,
  ``rtgate.response_id``, ``rtgate.response.status``, ``realtime.workflow_name``,
  ``realtime.group_id``, ``realtime.metadata.<key>``; events ``vad.speech_stopped``,
  ``stt.completed``, ``llm.first_token``, ``tts.first_chunk``, ``function_call``.
- ``mcp.call`` — a child span per MCP tool call, from ``response.mcp_call.in_progress``
  to ``.completed`` / ``.failed`` (status error), with ``mcp.server_label`` and
  ``mcp.tool``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .turn_tracer import TurnTracer

_provider: Any = None
"""The process's ``TracerProvider`` while an endpoint is configured (imported only then:
the OpenTelemetry SDK costs a quarter of a second to import)."""


def configure(endpoint: str) -> None:
    """Export this process's turn traces to the OTLP/HTTP ``endpoint`` (``…/v1/traces``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    global _provider
    provider = TracerProvider(resource=Resource.create({"service.name": "rtgate"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _provider = provider


def shutdown() -> None:
    """Flush what is queued and stop exporting (the server's shutdown)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def tracer_for(session_id: str) -> TurnTracer | None:
    """A tracer for one session, or ``None`` when no endpoint is configured."""
    if _provider is None:
        return None
    from .turn_tracer import TurnTracer

    return TurnTracer(_provider.get_tracer("rtgate.realtime"), session_id)

"""Turn spans from server events (rtgate.turn_tracer), with the SDK's in-memory exporter."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rtgate.protocol.session import TracingConfig
from rtgate.turn_tracer import TurnTracer


def test_speech_turn_with_an_mcp_call() -> None:
    """The response span starts at the end of speech; an MCP call is its child span, failed
    calls are errors; STT, first token and first audio are events."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    turn = TurnTracer(provider.get_tracer("t"), "sess_1")
    tracing = TracingConfig(workflow_name="w")
    call = {"id": "item_c", "type": "mcp_call", "server_label": "docs", "name": "search", "arguments": ""}
    for event in [
        {"type": "input_audio_buffer.speech_stopped", "item_id": "item_u", "audio_end_ms": 900},
        {"type": "response.created", "response": {"id": "resp_1"}},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u"},
        {"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0, "item": call},
        {"type": "response.mcp_call.in_progress", "item_id": "item_c", "output_index": 0},
        {"type": "response.mcp_call.failed", "item_id": "item_c", "output_index": 0},
        {"type": "response.output_audio_transcript.delta", "response_id": "resp_1"},
        {"type": "response.output_audio.delta", "response_id": "resp_1"},
        {"type": "response.output_audio.delta", "response_id": "resp_1"},
        {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}},
    ]:
        turn.on_event(event, tracing)
    mcp, response = exporter.get_finished_spans()
    assert response.name == "realtime.response" and mcp.name == "mcp.call"
    assert mcp.parent is not None and mcp.parent.span_id == response.context.span_id
    assert mcp.status.status_code is StatusCode.ERROR and mcp.attributes["mcp.tool"] == "search"
    assert [e.name for e in response.events] == ["vad.speech_stopped", "stt.completed", "llm.first_token",
                                                 "tts.first_chunk"]
    assert response.start_time == response.events[0].timestamp
    assert response.attributes["realtime.workflow_name"] == "w"


def test_untraced_session_records_nothing() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    turn = TurnTracer(provider.get_tracer("t"), "sess_1")
    turn.on_event({"type": "response.created", "response": {"id": "resp_1"}}, None)
    turn.on_event({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}, None)
    assert exporter.get_finished_spans() == ()

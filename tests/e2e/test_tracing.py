"""Turn traces over OTLP/HTTP to a collector on loopback, for sessions that set ``tracing``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rtgate.server.settings import Settings
from rtgate.testing.server import running_server

from .conftest import Events, client_for

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def otlp_collector() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OTLP/HTTP traces receiver on 127.0.0.1; yields its URL and the spans received."""
    spans: list[dict[str, Any]] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append({
                        "name": span.name,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "events": [e.name for e in span.events],
                        "parent": span.parent_span_id.hex(),
                        "id": span.span_id.hex(),
                        "trace": span.trace_id.hex(),
                    })
        return Response(b"", media_type="application/x-protobuf")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])]),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/traces", spans
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


async def test_a_traced_turn_reaches_the_collector() -> None:
    """A session with tracing {workflow_name, group_id, metadata} exports one span per
    response with those attributes and the first-token and first-audio events; a session
    without tracing exports nothing."""
    with (
        otlp_collector() as (url, spans),
        running_server(Settings(api_keys=("sk-test",), otlp_traces_endpoint=url)) as handle,
    ):
        async with client_for(handle).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            await conn.session.update(session={"type": "realtime", "tracing": {
                "workflow_name": "support", "group_id": "g-42", "metadata": {"customer": "acme"}}})
            await ev.expect("session.updated")
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            await conn.response.create()
            await ev.until("response.done")
        async with client_for(handle).realtime.connect(model="gpt-realtime") as conn:
            ev = Events(conn)
            await ev.expect("session.created")
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            await conn.response.create()
            await ev.until("response.done")
    # The server's shutdown flushed the exporter, then the collector stopped: all has arrived.
    assert [s["name"] for s in spans] == ["realtime.response"]
    span = spans[0]
    assert span["attributes"]["realtime.workflow_name"] == "support"
    assert span["attributes"]["realtime.group_id"] == "g-42"
    assert span["attributes"]["realtime.metadata.customer"] == "acme"
    assert span["attributes"]["rtgate.response.status"] == "completed"
    assert span["attributes"]["rtgate.session_id"].startswith("sess_")
    assert span["events"][:2] == ["llm.first_token", "tts.first_chunk"]

"""Fuzzed client events against a real server, both dialects (issue 17).

A bounded run of :mod:`rtgate.testing.fuzz` in the suite: every session survives, every
``error`` is spec-shaped (GA: strictly validated) with the client's ``event_id``, and the
server logs no traceback. ``RTGATE_FUZZ_EVENTS=50000`` runs it longer on demand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from rtgate.server.app import builtin_pipeline
from rtgate.server.settings import Settings
from rtgate.testing.fuzz import frames, fuzz_session
from rtgate.testing.server import ServerHandle, running_server
from rtgate.testing.validate import validate_server_event

pytestmark = pytest.mark.e2e

EVENTS = int(os.environ.get("RTGATE_FUZZ_EVENTS", "1000"))
SEED = int(os.environ.get("RTGATE_FUZZ_SEED", "17"))


class Tracebacks(logging.Handler):
    """Records of the server (it runs in this process) that are errors or carry a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(f"{record.name}: {record.getMessage()}"[:500])


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(Settings(api_keys=("sk-fuzz",), pipeline="builtin"),
                        profiles=lambda s: {"default": builtin_pipeline()},
                        vad_factory=lambda: None) as handle:
        yield handle


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_fuzzed_events_keep_the_session_alive_and_errors_spec_shaped(
    server: ServerHandle, tracebacks: Tracebacks, dialect: str
) -> None:
    url = f"{server.ws_url}/v1/realtime?model=gpt-realtime"
    report = await fuzz_session(url, dialect, frames(dialect, EVENTS, SEED), key="sk-fuzz",
                                validate=validate_server_event if dialect == "ga" else None)
    assert report.failures == []
    assert report.sent == len(frames(dialect, EVENTS, SEED)) and report.errors > 0
    assert tracebacks.records == []

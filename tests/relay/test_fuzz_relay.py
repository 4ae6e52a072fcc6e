"""Fuzzed client events through the relay, both dialects (issue 17).

The gateway routes ``gpt-realtime`` to an upstream rtgate; a Preview client goes through
the bridge in front of the relay. Same checks as ``tests/e2e/test_fuzz.py``: the session
survives, errors are spec-shaped with the client's ``event_id``, no traceback is logged.
"""

from __future__ import annotations

import logging
import os

import pytest

from rtgate.testing.fuzz import frames, fuzz_session
from rtgate.testing.validate import validate_server_event

from .conftest import CLIENT_KEY, Relay

pytestmark = pytest.mark.e2e

EVENTS = int(os.environ.get("RTGATE_FUZZ_EVENTS", "300"))
SEED = int(os.environ.get("RTGATE_FUZZ_SEED", "17"))


@pytest.mark.parametrize("dialect", ["ga", "preview"])
async def test_fuzzed_events_through_the_relay(
    relay: Relay, dialect: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{relay.gateway.ws_url}/v1/realtime?model=gpt-realtime"
    with caplog.at_level(logging.WARNING):
        report = await fuzz_session(url, dialect, frames(dialect, EVENTS, SEED), key=CLIENT_KEY,
                                    validate=validate_server_event if dialect == "ga" else None)
    assert report.failures == []
    assert report.errors > 0
    assert [r.getMessage()[:300] for r in caplog.records
            if r.exc_info or r.levelno >= logging.ERROR] == []

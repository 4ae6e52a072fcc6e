"""Freezing the start-up heap (server/heap.py) and the app's ``on_ready`` hook."""

from __future__ import annotations

import gc

from starlette.testclient import TestClient

from rtgate.server.app import create_app
from rtgate.server.heap import freeze_startup_heap
from rtgate.server.settings import Settings
from rtgate.testing.server import fake_profiles


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_freeze_collects_first_then_freezes_the_survivors() -> None:
    kept = _Cycle()
    _Cycle()  # garbage: a collection frees it, a freeze would keep it forever
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 0
        assert gc.is_tracked(kept)
        # Nothing unreachable was frozen: the cycle above was collected first.
        assert not [o for o in gc.get_objects() if type(o) is _Cycle and o is not kept]
    finally:
        gc.unfreeze()


def test_on_ready_runs_once_after_start_up_before_serving() -> None:
    """It sees the server state built (so that it is frozen too), before any request."""
    calls: list[bool] = []
    app = create_app(
        Settings(), profiles=fake_profiles(), vad_factory=lambda: None,
        on_ready=lambda: calls.append(hasattr(app.state, "rtgate")),
    )
    assert calls == []
    with TestClient(app) as client:
        assert calls == [True]
        assert client.get("/healthz").status_code == 200
    assert calls == [True]

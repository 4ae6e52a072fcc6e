"""The app registers each route once."""

from __future__ import annotations

from collections import Counter

from starlette.routing import Route, WebSocketRoute

from rtgate.server.app import create_app
from rtgate.server.settings import Settings


def test_no_route_is_registered_twice() -> None:
    app = create_app(Settings())
    keys = Counter(
        (type(route).__name__, route.path, tuple(sorted(getattr(route, "methods", None) or ())))
        for route in app.routes if isinstance(route, Route | WebSocketRoute)
    )
    assert [key for key, count in keys.items() if count > 1] == []
    assert any(path.endswith("/realtime/client_secrets") for _, path, _ in keys)

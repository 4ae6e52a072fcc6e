"""The parts of uvicorn (and Starlette) that are not public API but that rtgate relies on.

:mod:`rtgate.server.ws_protocol` subclasses uvicorn's ``WebSocketsSansIOProtocol`` and
reads and writes its state (the parsed message's ``frames``, the ASGI ``queue``,
``read_paused``, the ``websockets`` ``conn``, …); :mod:`rtgate.server.preauth`
subclasses ``H11Protocol`` and reads its ``cycle``; :mod:`rtgate.asgi.close`
reaches the transport through Starlette's ``WebSocket._receive``, a bound method of the
protocol. None of that is promised to stay. ``pyproject.toml`` therefore requires
``uvicorn>=0.53``, the first release that has all of it (``frames`` arrived in 0.50,
``disconnected`` in 0.53), and :func:`check` — run when the server's uvicorn options are
built and by the test suite — refuses to start on a uvicorn whose internals differ,
naming what is missing, instead of failing on the first message of the first session.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

MIN_UVICORN = "0.53"
"""The lowest uvicorn whose internals match the lists below (also in ``pyproject.toml``)."""

WS_METHODS = (
    "connection_made", "connection_lost", "data_received", "pause_writing", "resume_writing",
    "shutdown", "handle_connect", "handle_parser_exception", "send_receive_event_to_app",
    "start_keepalive", "receive", "send",
)
"""Methods of ``WebSocketsSansIOProtocol`` that ``BufferedSansIOProtocol`` overrides or calls."""

WS_STATE = (
    "frames", "curr_msg_data_type", "queue", "read_paused", "conn", "close_sent",
    "handshake_complete", "disconnected", "transport", "loop",
)
"""Attributes a fresh ``WebSocketsSansIOProtocol`` must have (set in its ``__init__``);
``scope`` and ``response`` appear in ``handle_connect``, whose existence is checked above."""

H11_METHODS = ("connection_made", "connection_lost", "data_received", "handle_events",
               "handle_websocket_upgrade", "on_response_complete")
H11_STATE = ("cycle", "transport", "loop")


class UvicornInternalsChanged(RuntimeError):
    """The installed uvicorn (or Starlette) lacks internals rtgate's server relies on."""


def _protocol_instance(cls: type[Any]) -> Any:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    config = Config(app=app, ws="websockets-sansio", lifespan="off", log_config=None)
    loop = asyncio.new_event_loop()
    try:
        return cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()


def missing() -> list[str]:
    """What rtgate needs and the installed uvicorn / Starlette does not have (empty: all there)."""
    from starlette.websockets import WebSocket
    from uvicorn.protocols.http.h11_impl import H11Protocol

    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return ["uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol"]
    gaps: list[str] = []
    for cls, methods, state in ((WebSocketsSansIOProtocol, WS_METHODS, WS_STATE),
                                (H11Protocol, H11_METHODS, H11_STATE)):
        gaps += [f"{cls.__name__}.{name}()" for name in methods if not callable(getattr(cls, name, None))]
        instance = _protocol_instance(cls)
        gaps += [f"{cls.__name__}.{name}" for name in state if not hasattr(instance, name)]

    async def receive() -> Any:  # a stand-in for the protocol's bound receive
        raise AssertionError

    async def send(message: Any) -> None:
        raise AssertionError

    ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send)
    if getattr(ws, "_receive", None) is not receive:
        gaps.append("starlette.websockets.WebSocket._receive")
    return gaps


@functools.cache
def check() -> None:
    """Raise :class:`UvicornInternalsChanged` naming every missing internal, if any (checked
    once per process: the installed packages do not change under it)."""
    gaps = missing()
    if gaps:
        import uvicorn

        raise UvicornInternalsChanged(
            f"uvicorn {uvicorn.__version__} lacks internals rtgate relies on: {', '.join(gaps)}. "
            f"Install a uvicorn >= {MIN_UVICORN} that has them (pip install 'uvicorn>={MIN_UVICORN}'); "
            "see src/rtgate/server/uvicorn_contract.py.")

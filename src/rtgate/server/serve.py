"""Running one server process: uvicorn with rtgate's protocol, limits and drain.

:func:`run_process` is what ``rtgate serve`` runs in its one process, or in each worker of
``--workers N`` (server/workers.py). :class:`DrainingServer` turns the first SIGTERM into
a drain (server/drain.py) before uvicorn's own shutdown, and the first SIGINT into a
drain with no wait; a second signal stops at once, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from .auth import install_log_redaction
from .settings import Settings
from .ws_protocol import uvicorn_ws_options

log = logging.getLogger("rtgate.server")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM (or SIGINT) drains the app first."""

    def __init__(self, config: uvicorn.Config, app: Starlette, drain_timeout_s: float,
                 *, reraise_signals: bool = True) -> None:
        super().__init__(config)
        self._app = app
        self._reraise_signals = reraise_signals
        self._drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._draining = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
        timeout = self._drain_timeout_s if sig == signal.SIGTERM else 0.0
        self._loop.call_soon_threadsafe(self._start_drain, timeout)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if not self._reraise_signals:
            # uvicorn raises the signal again once it has stopped, which kills the process
            # before its exit handlers run (a worker's leaked-semaphore warnings); a worker
            # returns to its supervisor normally instead.
            self._captured_signals.clear()

    def _start_drain(self, timeout_s: float) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(timeout_s))

    async def _drain(self, timeout_s: float) -> None:
        def active() -> int:
            state = getattr(self._app.state, "rtgate", None)
            return int(state.active_sessions) if state is not None else 0

        try:
            await self._app.state.drain.run(active, timeout_s)
        finally:
            self.should_exit = True


def uvicorn_config(settings: Settings, app: Starlette, loop: str, **overrides: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        **uvicorn_ws_options(settings),
        log_level=settings.server.log_level,
        loop=loop,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown.shutdown_timeout_s)),
        **overrides,
    )


def run_process(settings: Settings, app: Starlette, loop: str,
                sockets: list[socket.socket] | None = None) -> None:
    """Serve ``app`` until a signal ends it: on ``settings.host``/``port``, or on
    ``sockets`` already bound (a worker's share of the port and its internal listener,
    which then exits normally after a signal instead of re-raising it)."""
    server = DrainingServer(uvicorn_config(settings, app, loop), app, settings.shutdown.drain_timeout_s,
                            reraise_signals=sockets is None)
    install_log_redaction()  # again: uvicorn's config has just set up its loggers
    server.run(sockets=sockets)


__all__ = ["DrainingServer", "run_process", "uvicorn_config"]

"""Deadlines and a cap for connections that have not been authenticated yet.

Authentication needs a whole request: the key travels in its headers (or the WebSocket
subprotocol header). Until then a connection is anonymous and costs a file descriptor,
so every stage before it has a deadline (issue 17, defect 2 — slowloris):

==================  =============================  =======================================
stage               ends when                      on expiry
==================  =============================  =======================================
request headers     the request line and headers   ``408`` then close
                    are in (timer from the
                    connection, or from the end
                    of the previous response)
request body        the body is in                 ``408`` then close; the app reads a
                                                   disconnect (``ClientDisconnect``)
WebSocket           the app answered the upgrade   close
handshake           (``101``)
==================  =============================  =======================================

Trickling bytes does not extend a deadline. At most ``max_unauthenticated_connections``
connections may be in the header or body stage at once; a connection beyond that is
answered ``503`` and closed at once, so anonymous clients cannot use up the process's
file descriptors. The cap defaults to a quarter of the open-file limit
(:func:`auto_unauthenticated_cap`).

Should the process still run out of descriptors (``EMFILE`` on ``accept``), asyncio's
selector loop reports the error once per pending connection (up to the listen backlog) on
every retry; :func:`install_accept_error_filter` turns that into one warning line per
interval with a count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("rtgate.preauth")

ACCEPT_ERROR = "socket.accept() out of system resource"
"""asyncio's message for ``EMFILE``/``ENFILE``/``ENOBUFS``/``ENOMEM`` on ``accept``."""

_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n"
                    b"content-length: 0\r\n\r\n")
_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n"
                b"retry-after: 1\r\ncontent-length: 0\r\n\r\n")


def auto_unauthenticated_cap() -> int:
    """A quarter of the soft open-file limit, between 16 and 1024 (1024 without a limit)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1024
    if soft <= 0 or soft == getattr(resource, "RLIM_INFINITY", -1):
        return 1024
    return max(16, min(1024, soft // 4))


class PreAuthGate:
    """Counts the connections in the header or body stage; one per server."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.waiting = 0
        self.refused = 0
        self.expired = 0

    def enter(self) -> bool:
        if self.waiting >= self.cap:
            self.refused += 1
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1


class PreAuthH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the cap of the module docstring."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    gate: PreAuthGate = PreAuthGate(1024)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False
        self._stage = "headers"
        self._cycle_seen: object = None

    # -- stages

    def _start(self, stage: str, timeout_s: float) -> None:
        self._stop_deadline()
        self._stage = stage
        self._deadline = self.loop.call_later(timeout_s, self._expire)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _authenticable(self) -> None:
        """The request is whole: no deadline, no longer counted."""
        self._stop_deadline()
        if self._counted:
            self._counted = False
            self.gate.leave()

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.gate.expired += 1
        log.debug("closing a connection: request %s not received within %.0f s", self._stage,
                  self.header_timeout_s if self._stage == "headers" else self.body_timeout_s)
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    # -- uvicorn's hooks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.gate.enter():
            transport.write(_UNAVAILABLE)
            transport.close()
            return
        self._counted = True
        self._start("headers", self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._authenticable()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is None or self._deadline is None or self.transport.is_closing():
            return
        if cycle is not self._cycle_seen:  # a new request's headers are in
            self._cycle_seen = cycle
            if cycle.more_body:
                self._start("body", self.body_timeout_s)
                return
            self._authenticable()
        elif self._stage == "body" and not cycle.more_body:
            self._authenticable()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._authenticable()  # the WebSocket protocol has its own handshake deadline
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # A kept-alive connection's next request gets the same deadline (uvicorn's
            # keep-alive timer restarts on every byte); it is not counted again.
            self._start("headers", self.header_timeout_s)


def http_protocol(settings: Any) -> type[PreAuthH11Protocol]:
    """A :class:`PreAuthH11Protocol` class for uvicorn's ``http=`` with its own gate."""
    cap = settings.preauth.max_unauthenticated_connections or auto_unauthenticated_cap()
    return type("PreAuthH11Protocol", (PreAuthH11Protocol,), {
        "header_timeout_s": settings.preauth.http_header_timeout_s,
        "body_timeout_s": settings.preauth.http_body_timeout_s,
        "gate": PreAuthGate(cap),
    })


def install_accept_error_filter(loop: asyncio.AbstractEventLoop, interval_s: float = 10.0) -> None:
    """Report ``accept`` running out of resources once per ``interval_s`` with a count, no
    traceback; every other report goes to the handler that was there before."""
    previous = loop.get_exception_handler()
    state = {"last": float("-inf"), "count": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_ERROR:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        state["count"] += 1
        now = time.monotonic()
        if now - state["last"] >= interval_s:
            exc = context.get("exception")
            log.warning("cannot accept connections: %s (%d times since the last report); "
                        "raise the open-file limit or lower max_sessions",
                        getattr(exc, "strerror", None) or exc, state["count"])
            state["last"], state["count"] = now, 0

    loop.set_exception_handler(handler)


__all__ = [
    "ACCEPT_ERROR", "PreAuthGate", "PreAuthH11Protocol", "auto_unauthenticated_cap",
    "http_protocol", "install_accept_error_filter",
]

"""Graceful drain: how a process leaves a load balancer without cutting a conversation.

On SIGTERM (a rolling restart, a scale-down, ``docker stop``) the process:

1. reports not ready at once (``/readyz`` answers 503, so the load balancer stops sending
   it new connections) and refuses new sessions with the ``error`` event
   ``server_shutting_down`` (``server_error``) and close 1012, Service Restart — a code the
   official SDK treats as recoverable, so a client with ``on_reconnecting`` reconnects
   and the load balancer takes it elsewhere. New WebRTC calls get HTTP 503 with the same
   error. Sidebands of live calls and hangups still work: they belong to live sessions;
2. lets the live sessions go on for up to ``drain_timeout_s``;
3. ends those still open then (:meth:`Drain.end_all`): a local session's open responses
   end with ``response.done`` status ``failed`` (code ``server_shutting_down``), then an
   ``error`` says why and the socket closes with 1012 (:meth:`Session.shut_down`); a
   WebRTC call's session the same way, over its data channel and sidebands, before the
   peer connection closes. A relayed session gets the ``error`` and the close; the
   upstream's response in progress is abandoned with it (rtgate cannot finish it);
4. then the server stops as before: ``shutdown_timeout_s`` bounds the close handshakes.

SIGINT (Ctrl-C) drains with no wait: sessions end at once, cleanly, as in step 3. A second
signal during a drain stops the server at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from ..protocol.errors import SERVER_SHUTTING_DOWN, shutting_down  # the relay sends it too; re-exported

log = logging.getLogger("rtgate.drain")

CLOSE_CODE = 1012
"""Service Restart: the close of a session ended or refused by a drain."""

POLL_S = 0.1
"""How often a drain checks whether the last session has gone."""


Ender = Callable[[], object]
"""Ends one live session for the drain; called once, from the event loop."""


class Drain:
    """One process's drain state and its live sessions' enders; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._enders: dict[int, Ender] = {}
        self._ids = itertools.count()
        self.started_at: float | None = None
        self.deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def register(self, end: Ender) -> Callable[[], None]:
        """Add a live session's ender; returns the function that removes it again."""
        key = next(self._ids)
        self._enders[key] = end

        def unregister() -> None:
            self._enders.pop(key, None)

        return unregister

    def begin(self, timeout_s: float) -> bool:
        """Start draining (``False`` if a drain has already started)."""
        if self.draining:
            return False
        self.started_at = self._clock()
        self.deadline = self.started_at + timeout_s
        return True

    def end_all(self) -> int:
        """End every live session now; returns how many were ended."""
        enders, self._enders = list(self._enders.values()), {}
        for end in enders:
            try:
                end()
            except Exception:  # one session's failure must not keep the others open
                log.exception("drain: a session could not be ended cleanly")
        return len(enders)

    async def run(self, active: Callable[[], int], timeout_s: float) -> None:
        """Drain: wait until ``active()`` is 0 or ``timeout_s`` has passed, then end the
        sessions still open and wait (up to ``timeout_s`` more, at least 2 s) for them to
        go, so that their last events are written before the server closes sockets."""
        self.begin(timeout_s)
        log.info("draining: not ready, refusing new sessions; %d live, waiting up to %.0f s",
                 active(), timeout_s)
        if not await self._until_idle(active, timeout_s):
            ended = self.end_all()
            log.info("drain deadline: ended %d session(s) with %s", ended, SERVER_SHUTTING_DOWN)
            await self._until_idle(active, max(2.0, timeout_s))
        log.info("drained: %d session(s) still open", active())

    async def _until_idle(self, active: Callable[[], int], timeout_s: float) -> bool:
        until = self._clock() + timeout_s
        while active() > 0:
            if self._clock() >= until:
                return False
            await asyncio.sleep(POLL_S)  # polls a counter that three session kinds change
        return True


__all__ = ["CLOSE_CODE", "Drain", "shutting_down"]

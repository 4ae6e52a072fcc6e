"""The session host: one place that admits, counts and builds every session of a process.

Every entry point — the Realtime WebSocket (local and relayed), a WebRTC call, a SIP call
(local and relayed) — asks the one :class:`SessionHost` of the process
(``ServerState.host``) for a session, and gets either a :class:`Ticket` or a
:class:`Refusal`. It never counts, limits or builds a session itself.

Admission, in this order (the first rule that applies refuses; HTTP status for the REST
entry points, close code for a WebSocket):

1. the process is draining (server/drain.py) — ``server_error`` /
   ``server_shutting_down``, 503, close 1012;
2. ``max_sessions`` sessions hold a slot — ``server_error`` / ``server_busy``, 503, close 1013;
3. no room for another conversation (server/admission.py; only for a profile that runs
   models on this machine) — ``server_error`` / ``server_busy``, 503, close 1013, counted
   by reason; the one refusal a sibling worker with room may take over
   (:attr:`Refusal.forwardable`);
4. the key's own limits (server/keys.py) — ``rate_limit_error`` / ``rate_limit_exceeded``,
   429 with ``Retry-After``, close 1013, counted as ``key_limit``.

The first three are :meth:`SessionHost.check` (synchronous, takes nothing);
:meth:`SessionHost.admit` runs it, then asks the cluster store for the key's lease, so
nothing is taken for a session that may not start. A SIP accept also checks before it
decides the pending call, so that a refused call stays pending.

A :class:`Ticket` holds what an admitted session takes: its slot in ``max_sessions``
(:class:`~rtgate.server.slots.SessionSlot`, taken at once, given back when the session's
last task has ended), its key lease, and — once the session exists
(:meth:`SessionHost.runner`) and its profile is limited — its place among the
conversations. :meth:`Ticket.release` gives all of them back exactly once, and adds the
session's usage to its account; a second call does nothing.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..cluster import Lease, Refused
from ..core.session import Session
from ..protocol.client_events import DecodeLimits
from ..protocol.errors import SERVER_ERROR, RealtimeError
from ..protocol.session import SessionConfig
from ..transport.connection import Channel, OutputHook, SessionRunner
from .client_secrets import error_response
from .drain import CLOSE_CODE as DRAIN_CLOSE_CODE
from .drain import Drain, shutting_down
from .keys import admit as admit_key
from .keys import record_session
from .keys import refusal as key_refusal
from .settings import Settings
from .slots import SessionSlot

if TYPE_CHECKING:
    from ..pipeline.responder import Pipeline
    from ..transport.vad import VadService
    from .admission import Admission
    from .metrics import Metrics
    from .node import Node

BUSY_CLOSE_CODE = 1013
"""Try Again Later: the close of a session refused for the server's or the key's limits."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A session that may not start: the error, and how each kind of entry point reports it
    (a WebSocket: the ``error`` event and :attr:`close_code`; REST: :meth:`response`)."""

    error: RealtimeError
    status: int
    """The HTTP status of a REST entry point (a WebRTC offer, a SIP accept)."""
    close_code: int
    """The WebSocket close code after the ``error`` event."""
    retry_after_s: float | None = None
    """A key's limit: when to try again (HTTP ``Retry-After``, whole seconds up)."""
    forwardable: bool = False
    """No room for another conversation here: a sibling with room may serve the session."""

    def response(self) -> JSONResponse:
        """The cloud's REST error body with :attr:`status` (and ``Retry-After``)."""
        headers = None
        if self.retry_after_s is not None:
            headers = {"Retry-After": str(math.ceil(self.retry_after_s))}
        return error_response(self.status, self.error, headers=headers)


_DETACHED: set[asyncio.Task[Any]] = set()


def detached(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` on its own task, kept referenced until it ends: what a plain callback
    (a call's ``on_closed``) starts but cannot await. ``coro`` must not raise."""
    task = asyncio.get_running_loop().create_task(coro)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


@dataclass(eq=False)
class Ticket:
    """One admitted session's hold on the process; see the module docstring."""

    host: SessionHost
    account: str
    lease: Lease
    limited: bool
    """Its sessions count as conversations (the profile runs models on this machine)."""
    slot: SessionSlot
    sessions: list[Session] = field(default_factory=list)
    released: bool = False

    def opened(self, session: Session) -> None:
        """``session`` now exists: count it as a conversation (when :attr:`limited`) and
        bill its usage to :attr:`account` at release (the first session's, as before)."""
        self.sessions.append(session)
        if self.limited and self.host.admission is not None:
            self.host.admission.opened(session)

    def _release_now(self, stragglers: Iterable[asyncio.Task[Any]]) -> bool:
        if self.released:
            return False
        self.released = True
        if self.limited and self.host.admission is not None:
            for session in self.sessions:
                self.host.admission.closed(session)
        record_session(self.host, self.account, self.sessions[0] if self.sessions else None)
        self.slot.release_when_done(stragglers)
        return True

    async def release(self, stragglers: Iterable[asyncio.Task[Any]] = ()) -> None:
        """Give back the conversation and the key lease, record the usage, and free the
        slot once every task in ``stragglers`` has ended. Later calls do nothing."""
        if self._release_now(stragglers):
            await self.lease.release()

    def release_soon(self, stragglers: Iterable[asyncio.Task[Any]] = ()) -> None:
        """:meth:`release` from a plain callback: the key lease goes back on its own task."""
        if self._release_now(stragglers):
            detached(self.lease.release())


@dataclass(eq=False)
class SessionHost:
    """Admits, counts and builds the sessions of one process; see the module docstring.

    ``node``, ``settings`` and ``metrics`` are also what :mod:`.keys` reads of the server.
    """

    settings: Settings
    vad: VadService | None
    admission: Admission | None
    drain: Drain
    node: Node
    metrics: Metrics | None
    active_sessions: int = 0
    """Sessions holding a slot (``max_sessions``, ``/healthz``, ``rtgate_sessions_active``)."""

    def check(self, pipeline: Pipeline | None = None, *, what: str = "sessions",
              ringing: int = 0) -> Refusal | None:
        """Why a new session may not start now, before anything is taken (``None``: it may).

        ``pipeline``: the local profile that would serve it (``None``: a relayed session,
        or one whose profile is not known yet, which does not count as a conversation).
        ``what`` names the session in the drain's message ("it takes no new {what}").
        ``ringing``: SIP calls not yet accepted or rejected, which ``max_sessions`` counts
        as taken when a new call arrives.
        """
        if self.drain.draining:
            return Refusal(shutting_down(f"it takes no new {what}"), 503, DRAIN_CLOSE_CODE)
        limit = self.settings.capacity.max_sessions
        if self.active_sessions + ringing >= limit:
            return Refusal(RealtimeError(
                f"This server is at its limit of {limit} sessions; try again later.",
                "server_busy", type=SERVER_ERROR), 503, BUSY_CLOSE_CODE)
        if pipeline is not None and pipeline.admission_limited and self.admission is not None:
            error = self.admission.refusal()  # counted on /metrics by the admission
            if error is not None:
                return Refusal(error, 503, BUSY_CLOSE_CODE, forwardable=True)
        return None

    async def admit(self, account: str, pipeline: Pipeline | None = None, *,
                    what: str = "sessions") -> Ticket | Refusal:
        """:meth:`check`, then the key's limits: a :class:`Ticket` (the slot taken) or why not."""
        refusal = self.check(pipeline, what=what)
        if refusal is not None:
            return refusal
        lease = await admit_key(self, account)
        if isinstance(lease, Refused):
            return Refusal(key_refusal(lease), 429, BUSY_CLOSE_CODE,
                           retry_after_s=lease.retry_after_s)
        limited = pipeline is not None and pipeline.admission_limited
        return Ticket(self, account, lease, limited, SessionSlot(self))

    def runner(self, ticket: Ticket, channel: Channel, pipeline: Pipeline, *, model: str | None,
               config: SessionConfig | None, transcription: bool, plays_audio: bool = False,
               output_hook: OutputHook | None = None) -> SessionRunner:
        """The session of ``ticket`` and the runner that carries it over ``channel``, with the
        server's limits; ``plays_audio``: the edge plays the output audio out in real time
        (a call), so the core tracks playback."""
        settings = self.settings
        session = Session(
            session_id=f"sess_{secrets.token_hex(11)}",
            kind="transcription" if transcription else "realtime",
            model=model,
            config=config,
            limits=settings.session.core_limits(),
            now=time.time(),
            plays_audio=plays_audio,
        )
        ticket.opened(session)
        return SessionRunner(
            session, channel, pipeline, vad=self.vad, output_hook=output_hook,
            decode_limits=DecodeLimits(max_append_bytes=settings.decode.max_append_bytes,
                                       max_json_depth=settings.decode.max_json_depth),
            queue_events=settings.outbound.outbound_queue_events,
            send_deadline_s=settings.outbound.send_deadline_s,
            mcp=settings.mcp.limits(),
        )


__all__ = ["BUSY_CLOSE_CODE", "Refusal", "SessionHost", "Ticket", "detached"]

"""Admission control for local sessions: refuse what would make everyone late.

A process serves a bounded number of *conversations* — sessions whose speech the models
turn into text and answers — with the voice latency target held for all of them.
:class:`Admission` refuses a new local session when either:

* the open conversations reach ``max_conversations`` (a setting; ``auto`` derives it
  from the cores the process may use, :func:`auto_conversations`), or
* the scheduler is already late: due work (a first answer, the next words of an answer
  being played) started more than ``overload_late_s`` after it was due within the last
  :data:`~rtgate.pipeline.scheduler.PRESSURE_WINDOW_S` (:meth:`Scheduler.pressure`).

Only profiles with a stage that runs a model on this machine are limited
(:attr:`Pipeline.admission_limited`, from :attr:`Backend.runs_locally`): network
backends bound themselves with ``max_in_flight``. Only conversations count: sessions
that have started (appended audio or added an item: :attr:`Session.engaged`) and whose
speech the models will use (:attr:`Session.uses_speech_text`). A session that only listens for turns
(``create_response: false``, no input transcription) costs the VAD alone, and the
global ``max_sessions`` bounds those; one that has just connected has not said yet what
it will be. The count is read when a session asks to start, so a session that turns
listening-only with a ``session.update`` stops counting from then on.

The refusal is the ``error`` event the server sends for its own limits (``server_error``,
``server_busy``) and close code 1013 (try again later); each one is counted on
``/metrics`` (``rtgate_sessions_refused_total``, by reason). Sessions already running are
untouched.
"""

from __future__ import annotations

from typing import Protocol

from ..core.session import Session
from ..pipeline.base import usable_cores
from ..pipeline.scheduler import Scheduler
from ..protocol.errors import RealtimeError

CONVERSATIONS_PER_CORE = 4
"""What ``max_conversations = auto`` allows per core: about the most conversations that
keep first audio within 1 s for nine turns in ten with the default stack on 2 cores
(docs/benchmarks.md, "Conversations": at 8, all admitted, p90 0.89 and 0.92 s in two
runs; at 6, 0.92 s)."""


def auto_conversations(cores: int | None = None) -> int:
    """``max_conversations`` for ``auto``: :data:`CONVERSATIONS_PER_CORE` per usable core."""
    return max(1, CONVERSATIONS_PER_CORE * (cores or usable_cores()))


class RefusalCounter(Protocol):
    def inc(self, *labels: str, amount: float = 1.0) -> None: ...


class Admission:
    """The conversations of one process and the rule that admits new ones."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        max_conversations: int,
        overload_late_s: float,
        refused: RefusalCounter | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.max_conversations = max_conversations
        self.overload_late_s = overload_late_s
        self._refused = refused
        self._sessions: set[Session] = set()

    def conversations(self) -> int:
        """Open local sessions that have started and whose speech the models will use."""
        return sum(1 for s in self._sessions if s.uses_speech_text and s.engaged)

    def refusal(self) -> RealtimeError | None:
        """Why a new local session may not start now, or ``None`` when it may."""
        if self.conversations() >= self.max_conversations:
            return self._refuse(
                "capacity",
                f"This server is serving its limit of {self.max_conversations} conversations "
                "at once; try again later.",
            )
        late = self.scheduler.pressure()
        if late > self.overload_late_s:
            return self._refuse(
                "overloaded",
                f"This server is overloaded (its speech models run {late:.1f} s behind); "
                "try again later.",
            )
        return None

    def opened(self, session: Session) -> None:
        self._sessions.add(session)

    def closed(self, session: Session) -> None:
        self._sessions.discard(session)

    def _refuse(self, reason: str, message: str) -> RealtimeError:
        if self._refused is not None:
            self._refused.inc(reason)
        return RealtimeError(message, "server_busy", type="server_error")

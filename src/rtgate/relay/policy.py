"""The relay's policy, sans I/O: the answer deadline, keepalive verdicts and the endings.

Both data paths of a relayed session — the parsed one (:mod:`.session`) and the spliced one
(:mod:`.splice`) — tell one :class:`RelayPolicy` what happened, with the current time
(the event loop's clock, passed in), and carry out what it returns. The policy owns no
timer, socket or task: a path asks it *when* to look again (:meth:`RelayPolicy.answer_due`)
and *what* follows (an :class:`Ending`, a :class:`Keepalive` verdict). Every constant of
the relay's rules is defined here, once.

Answer deadline (the upstream owes answers; ``answer_deadline_s``):

=====================================  ==========================================
event                                  effect
=====================================  ==========================================
session opened                         one answer owed (``session.created``); clock from now
client frame that needs an answer      one more owed; clock from now if none was owed
(anything but ``input_audio_buffer.
append``)
upstream message(s)                    each pays one owed answer (oldest first); clock
                                       from now (progress)
relay starts waiting on the client     deadline off (a slow client is not the
                                       upstream's silence)
relay stops waiting on the client      clock from now
a close frame passed either way        deadline off for good (nothing is owed after a close)
owed > 0, not waiting, clock + limit   the session ends: ``upstream_timeout`` (1011)
reached
=====================================  ==========================================

Upstream frames are not tied to the client event they answer, so each counts as the answer
to one event, oldest first. Unprompted frames (VAD events, audio deltas) can only pay
answers early — a stall may then go unnoticed by this rule (the keepalive still applies) —
never make a healthy upstream look stalled.

Keepalive (the spliced path pings both sides itself; the parsed path leaves it to
websockets and uvicorn and maps their ending here): a missed pong while the relay waits on
the client is not held against either side (the pong may sit unread behind the client's
data; the send deadline decides about a client that is not reading) — wait one more
timeout. Otherwise a silent upstream ends the session (``upstream_timeout``, 1011, and
close 1011 to the upstream), and a silent client is dropped with 1011, as uvicorn drops one.

Endings: every way rtgate ends a session is an :class:`Ending` built here (the table is in
:mod:`.session`'s docstring and docs/relay.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..protocol.errors import SERVER_ERROR, RealtimeError
from .upstream import RelayLimits

TO_UPSTREAM = "client_to_upstream"
"""The direction label (metrics, counts) of client frames going upstream."""
TO_CLIENT = "upstream_to_client"
"""The direction label of upstream frames going to the client."""
NO_ANSWER = "input_audio_buffer.append"
"""The one client event type the upstream does not answer (it arms no deadline)."""
UNSENDABLE_CLOSE_CODES = frozenset({1005, 1006, 1015})
"""Close codes that may not be sent in a close frame (RFC 6455 §7.4.1)."""
NOT_READING_REASON = "client is not reading events fast enough"
"""The close reason for a client that stops reading (the local pipeline's, for parity)."""
KEEPALIVE_REASON = "keepalive ping timeout"
"""The close reason for a side that stopped answering pings (uvicorn's and websockets')."""
CLOCK_SLACK_S = 0.001
"""Timers may fire up to the clock's resolution early; a check this close to due is due."""


@dataclass(frozen=True, slots=True)
class Ending:
    """How a relayed session ends: the close sent to the client, an error event before it,
    and the close sent to the upstream."""

    close_code: int
    reason: str
    error: RealtimeError | None = None
    by_client: bool = False
    """The client left (or broke the protocol): nothing more is sent to it."""
    client_stuck: bool = False
    """The client stopped reading: no ``error`` event is sent (it would not be read)."""
    upstream_code: int = 1000
    upstream_reason: str = "relay ended"

    @classmethod
    def fault(cls, error: RealtimeError, close_code: int, *, upstream_code: int = 1000,
              upstream_reason: str = "relay ended") -> Ending:
        """An error event, then ``close_code`` with the error's close reason."""
        return cls(close_code, error.close_reason, error, upstream_code=upstream_code,
                   upstream_reason=upstream_reason)

    @classmethod
    def not_reading(cls, send_deadline_s: float) -> Ending:
        """A send to the client blocked past ``send_deadline_s``: 1008, upstream closed 1000."""
        error = RealtimeError(
            f"The client stopped reading: a send blocked for more than {send_deadline_s:g} s.",
            "client_not_reading", type=SERVER_ERROR)
        return cls(1008, NOT_READING_REASON, error, client_stuck=True,
                   upstream_reason="client not reading")

    @classmethod
    def client_left(cls) -> Ending:
        """The client disconnected: the upstream is closed 1000 for it."""
        return cls(1000, "client disconnected", by_client=True, upstream_reason="client disconnected")


class Keepalive(enum.Enum):
    """What follows a missed pong (besides an :class:`Ending`)."""

    WAIT = "wait"
    """Wait one more pong timeout: the relay is waiting on the client."""
    DROP_CLIENT = "drop_client"
    """Close the client 1011 (:data:`KEEPALIVE_REASON`) and drop its connection."""


class RelayPolicy:
    """The answer deadline, keepalive verdicts and endings of one relayed session.

    ``name`` is the upstream's (it appears in error messages); ``now`` is the time the
    session opened on the clock every later call passes (the loop's ``time()``).
    """

    __slots__ = ("_limits", "_name", "_quiet_since", "closing", "owed", "waiting_on_client")

    def __init__(self, name: str, limits: RelayLimits, now: float) -> None:
        self._name = name
        self._limits = limits
        self.owed = 1  # the upstream owes session.created
        self._quiet_since = now
        self.waiting_on_client = False
        self.closing = False

    # ------------------------------------------------------------------ answer deadline

    def requested(self, now: float) -> None:
        """A client frame that needs an answer went upstream."""
        if not self.owed and not self.waiting_on_client:
            self._quiet_since = now  # the upstream's time starts with the request
        self.owed += 1

    def answered(self, messages: int, now: float) -> None:
        """``messages`` upstream messages arrived: each pays one owed answer; progress."""
        self.owed = max(0, self.owed - messages)
        self._quiet_since = now

    def client_blocked(self) -> None:
        """The relay waits on the client (a send in flight, a full write buffer)."""
        self.waiting_on_client = True

    def client_unblocked(self, now: float) -> None:
        """The client took what it was sent; the upstream's clock restarts now."""
        self.waiting_on_client = False
        self._quiet_since = now

    def close_seen(self) -> None:
        """A close frame passed: nothing more is owed after it."""
        self.closing = True

    def answer_due(self) -> float | None:
        """When the upstream counts as stalled if nothing changes; ``None``: the deadline is off."""
        if not self.owed or self.waiting_on_client or self.closing:
            return None
        return self._quiet_since + self._limits.answer_deadline_s

    def check_answer(self, now: float) -> Ending | None:
        """The ending if the answer deadline has passed at ``now``; ``None``: look again at
        :meth:`answer_due` (progress pushed it back, or it is off)."""
        due = self.answer_due()
        if due is None or now + CLOCK_SLACK_S < due:
            return None
        return self.stalled()

    def stalled(self) -> Ending:
        """The upstream let the answer deadline pass."""
        return Ending.fault(RealtimeError(
            f"The relay upstream '{self._name}' stalled: no event within "
            f"{self._limits.answer_deadline_s:g} s of a client event that needs an answer.",
            "upstream_timeout", type=SERVER_ERROR), 1011)

    # ------------------------------------------------------------------ keepalive

    def ping_interval(self, *, client: bool) -> float:
        """Seconds between rtgate's pings to the client or the upstream; 0: none."""
        limits = self._limits
        return limits.client_ping_interval_s if client else limits.ping_interval_s

    def pong_timeout(self, *, client: bool) -> float:
        """Seconds rtgate waits for the pong of its ping to the client or the upstream."""
        limits = self._limits
        return limits.client_ping_timeout_s if client else limits.ping_timeout_s

    def pong_missed(self, *, client: bool) -> Keepalive | Ending:
        """The client's or the upstream's pong did not come within :meth:`pong_timeout`."""
        if self.waiting_on_client:
            return Keepalive.WAIT
        if client:
            return Keepalive.DROP_CLIENT
        return self.keepalive_lost(upstream_code=1011)

    def keepalive_lost(self, *, upstream_code: int = 1000) -> Ending:
        """The upstream stopped answering keepalive pings."""
        return Ending.fault(RealtimeError(
            f"The relay upstream '{self._name}' stopped answering keepalive pings "
            f"({self._limits.ping_timeout_s:g} s).", "upstream_timeout", type=SERVER_ERROR), 1011,
            upstream_code=upstream_code, upstream_reason=KEEPALIVE_REASON)

    # ------------------------------------------------------------------ endings

    def not_reading(self) -> Ending:
        """A send to the client blocked past ``send_deadline_s``."""
        return Ending.not_reading(self._limits.send_deadline_s)

    def connection_lost(self) -> Ending:
        """The upstream connection went away without a close frame."""
        return Ending.fault(RealtimeError(
            f"The connection to the relay upstream '{self._name}' was lost mid-session "
            "(reset or closed without a close frame).", "upstream_connection_lost",
            type=SERVER_ERROR), 1011)

    def protocol_error(self, *, client: bool, close_code: int, reason: str) -> Ending:
        """The client's or the upstream's bytes broke RFC 6455 (``close_code``: 1002, 1009…).

        A client is closed with that code and the upstream 1000 for it; a broken upstream
        is an ``upstream_connection_lost`` fault (1011) and is closed with that code.
        """
        if client:
            return Ending(close_code, reason, by_client=True, upstream_reason="client disconnected")
        return Ending.fault(RealtimeError(
            f"The relay upstream '{self._name}' broke the WebSocket protocol ({reason}).",
            "upstream_connection_lost", type=SERVER_ERROR), 1011,
            upstream_code=close_code, upstream_reason=reason)

    def upstream_closed(self, close: tuple[int, str] | None, *, ping_timed_out: bool = False) -> Ending:
        """The upstream closed: its close code and reason pass to the client (1005, no
        code, as 1000); a code no close frame may carry, or no close frame, is a lost
        connection — or a lost keepalive when ``ping_timed_out``."""
        if close is not None:
            code, reason = close
            code = 1000 if code == 1005 else code
            if code not in UNSENDABLE_CLOSE_CODES:
                return Ending(code, reason)
        if ping_timed_out:
            return self.keepalive_lost()
        return self.connection_lost()

    @staticmethod
    def shut_down(error: RealtimeError) -> Ending:
        """The server's drain: ``error`` and 1012 to the client, 1001 (Going Away) upstream."""
        return Ending.fault(error, 1012, upstream_code=1001, upstream_reason="going away")

    @staticmethod
    def server_closing() -> Ending:
        """The server closes the client's connection under the relay (no error event)."""
        return Ending(1012, "server shutting down", upstream_code=1001, upstream_reason="going away")


__all__ = [
    "NOT_READING_REASON",
    "NO_ANSWER",
    "TO_CLIENT",
    "TO_UPSTREAM",
    "Ending",
    "Keepalive",
    "RelayPolicy",
]

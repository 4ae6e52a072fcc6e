"""Deadline scheduling of model work: one order for every engine of a process.

Every engine that does real work — a Whisper model, a llama.cpp model, espeak-ng, a
network backend — runs its jobs on a :class:`Lane`: at most ``capacity`` jobs run on it at
once, and the jobs waiting are granted in order of their due time, earliest deadline
first (ties in arrival order). The speech models that compute on this machine's CPU
(Whisper, llama.cpp) share one lane, :meth:`Scheduler.cores`, with one run per usable
core: they compete for the same cores, and separate lanes let a speech-to-text pass, a
first answer and a continuation run at once on two cores, each at a fraction of its
speed, with the operating system (not due times) deciding who goes first. Due times are
seconds on the process's monotonic clock:

* a turn that just ended: *now* — its first audio is late from the start;
* the next piece of an answer being spoken: when the audio already sent to that client
  runs out (:class:`~rtgate.pipeline.pacing.Playback`), so a long answer waits while a
  new turn gets its first words;
* speculation (transcripts of a growing utterance, LLM prompt prefill): no due time. It
  never waits: it runs only on spare capacity (:meth:`Lane.try_speculate`), and it is
  the first thing stopped.

Rules (:class:`LaneRules`, pure; :class:`Lane` adds the asyncio hand-off):

======================================  ==================================================
event                                   outcome
======================================  ==================================================
request, a run free, nobody waiting     granted at once
request otherwise                       waits in due order
speculate, a run free, nobody waiting   granted, marked speculative — unless it would take
                                        one of the lane's ``reserve`` runs, kept free for
                                        due work (on a lane made with
                                        ``speculate_idle_only``: only when nothing runs)
speculate otherwise                     refused (``None``): the caller drops the work
a job waits and every run is taken      the running job with the latest due time later
                                        than the waiter's (speculation first) is asked
                                        to yield (:attr:`Ticket.yield_requested`)
release                                 the earliest-due waiters take the free runs
a waiter gives up (cancelled)           it leaves the queue; nothing else changes
======================================  ==================================================

A yield request is advice: engines that can stop cleanly between tokens (llama.cpp)
end their current segment and ask again with their due time, so they resume right
after the more urgent job; the others finish what they run.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import usable_cores

Clock = Callable[[], float]

SPECULATIVE = math.inf
"""The due time of speculative work: after everything else."""

CORES = "cores"
"""The name of the lane of this process's CPU cores (:meth:`Scheduler.cores`)."""


@dataclass(eq=False, slots=True)
class Ticket:
    """One job's claim on a lane."""

    due: float
    seq: int
    requested_at: float
    granted_at: float | None = None
    work: str = ""
    """What the job is (``transcribe``, ``answer``, ``prefill``, …): the key of
    :attr:`LaneStats.work`."""
    yield_requested: bool = False
    """Set when a more urgent job waits; see the module docstring."""
    cancelled: bool = False

    @property
    def speculative(self) -> bool:
        return self.due == SPECULATIVE


@dataclass(slots=True)
class WorkStats:
    """Counters of one kind of job on a lane (:attr:`Ticket.work`)."""

    runs: int = 0
    busy_s: float = 0.0
    wait_s: float = 0.0
    late_s: float = 0.0


@dataclass(slots=True)
class LaneStats:
    """Counters of one lane (exported on ``/metrics``). Runs and times are kept by kind
    of job (:attr:`work`); the lane's totals are their sums."""

    waited: int = 0
    """Grants that had to queue."""
    speculated: int = 0
    speculation_refused: int = 0
    yield_requests: int = 0
    work: dict[str, WorkStats] = field(default_factory=dict)
    """Runs, busy, wait and late time by kind of job, so an operator sees where the
    cores go."""

    def of(self, work: str) -> WorkStats:
        stats = self.work.get(work)
        if stats is None:
            stats = self.work[work] = WorkStats()
        return stats

    @property
    def granted(self) -> int:
        return sum(w.runs for w in self.work.values())

    @property
    def wait_s(self) -> float:
        """Total time granted jobs spent queued."""
        return sum(w.wait_s for w in self.work.values())

    @property
    def busy_s(self) -> float:
        """Total time granted jobs held their runs."""
        return sum(w.busy_s for w in self.work.values())

    @property
    def late_s(self) -> float:
        """Total time grants waited past their due time (queueing only: a job that asks
        after its due time is late from when it asks)."""
        return sum(w.late_s for w in self.work.values())


PRESSURE_WINDOW_S = 10.0
"""How far back :meth:`LaneRules.pressure` looks at late grants."""


@dataclass(slots=True)
class LaneRules:
    """The pure state of one lane: who runs, who waits, who is asked to yield."""

    capacity: int
    speculate_idle_only: bool = False
    """Speculation only when nothing runs: for engines whose concurrent runs share the
    same cores (llama.cpp batches every run on its threads), where a speculative run
    slows the real one even with a run free."""
    reserve: int = 0
    """Runs speculation never takes: a speculative job cannot be stopped at once (a
    Whisper pass runs to its end), so a turn that ends while speculation holds every
    free core would wait for it; with a run kept back, due work starts at once."""
    running: set[Ticket] = field(default_factory=set)
    stats: LaneStats = field(default_factory=LaneStats)
    last_due_release: float = -math.inf
    """When the last job that was not speculative ended (``-inf``: none yet)."""
    _waiting: list[tuple[float, int, Ticket]] = field(default_factory=list)
    _waiting_count: int = 0
    _seq: int = 0
    _late: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=256))
    """(grant time, lateness) of recent late grants."""

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"a lane needs a capacity of at least 1, not {self.capacity}")
        if not 0 <= self.reserve < self.capacity:
            raise ValueError(f"a lane of {self.capacity} runs cannot keep {self.reserve} back")

    @property
    def waiting(self) -> int:
        return self._waiting_count

    def pressure(self, now: float, window_s: float = PRESSURE_WINDOW_S) -> float:
        """How late due work runs on this lane, in seconds: the larger of how overdue the
        most urgent waiter is now and the worst lateness of a grant in the last
        ``window_s``. 0 when everything ran on time."""
        worst = 0.0
        for _, _, ticket in heapq.nsmallest(1, (e for e in self._waiting if not e[2].cancelled)):
            worst = max(worst, now - max(ticket.due, ticket.requested_at))
        for granted_at, late in self._late:
            if now - granted_at <= window_s:
                worst = max(worst, late)
        return worst

    def first_waiting_due(self) -> float:
        """The due time of the most urgent job waiting (``inf`` when none waits)."""
        self._drop_cancelled_head()
        return self._waiting[0][0] if self._waiting else math.inf

    def has_spare(self) -> bool:
        return len(self.running) < self.capacity and not self._waiting_count

    def request(self, due: float, now: float, work: str = "") -> Ticket:
        """A job due at ``due`` asks to run; granted at once or queued (check ``granted_at``)."""
        ticket = self._ticket(due, now, work)
        if self.has_spare():
            self._grant(ticket, now)
        else:
            heapq.heappush(self._waiting, (ticket.due, ticket.seq, ticket))
            self._waiting_count += 1
            self._ask_to_yield()
        return ticket

    def speculate(self, now: float, work: str = "") -> Ticket | None:
        """Speculative work asks to run: granted only on spare capacity, else refused."""
        free = self.capacity - len(self.running)
        if self._waiting_count or free <= self.reserve or (self.speculate_idle_only and self.running):
            self.stats.speculation_refused += 1
            return None
        ticket = self._ticket(SPECULATIVE, now, work)
        self._grant(ticket, now)
        self.stats.speculated += 1
        return ticket

    def release(self, ticket: Ticket, now: float) -> list[Ticket]:
        """``ticket`` ends (done, failed or given up); returns the tickets granted now."""
        if ticket.granted_at is None:
            if not ticket.cancelled:
                ticket.cancelled = True
                self._waiting_count -= 1  # removed lazily from the heap
            return []
        if ticket not in self.running:
            return []
        self.running.discard(ticket)
        if not ticket.speculative:
            self.last_due_release = now
        self.stats.of(ticket.work).busy_s += now - ticket.granted_at
        granted: list[Ticket] = []
        while self._waiting and len(self.running) < self.capacity:
            _, _, waiter = heapq.heappop(self._waiting)
            if waiter.cancelled:
                continue
            self._waiting_count -= 1
            self._grant(waiter, now)
            granted.append(waiter)
        self._drop_cancelled_head()
        self._ask_to_yield()
        return granted

    def _ticket(self, due: float, now: float, work: str) -> Ticket:
        self._seq += 1
        return Ticket(due=due, seq=self._seq, requested_at=now, work=work)

    def _grant(self, ticket: Ticket, now: float) -> None:
        ticket.granted_at = now
        self.running.add(ticket)
        work = self.stats.of(ticket.work)
        work.runs += 1
        if now > ticket.requested_at:
            self.stats.waited += 1
            work.wait_s += now - ticket.requested_at
        late = now - max(ticket.due, ticket.requested_at)
        if not ticket.speculative and late > 0:
            work.late_s += late
            self._late.append((now, late))

    def _drop_cancelled_head(self) -> None:
        while self._waiting and self._waiting[0][2].cancelled:
            heapq.heappop(self._waiting)

    def _ask_to_yield(self) -> None:
        """Ask as many running jobs to yield as there are more urgent waiters."""
        if len(self.running) < self.capacity:
            return
        live = (entry for entry in self._waiting if not entry[2].cancelled)
        urgent = [t for _, _, t in heapq.nsmallest(self.capacity, live)]
        asked = sum(1 for t in self.running if t.yield_requested)
        candidates = sorted(
            (t for t in self.running if not t.yield_requested), key=lambda t: (t.due, t.seq), reverse=True
        )
        for waiter in urgent[asked:]:
            if not candidates or candidates[0].due <= waiter.due:
                break
            victim = candidates.pop(0)
            victim.yield_requested = True
            self.stats.yield_requests += 1


class Lane:
    """A resource run at most ``capacity`` jobs at a time, in due order; see the module docstring.

    Thread-safe: the engines are process-wide, and a process may run more than one event
    loop (tests run a server's loop beside their own); each waiter is woken on its own loop.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        *,
        clock: Clock = time.monotonic,
        speculate_idle_only: bool = False,
        reserve: int = 0,
    ) -> None:
        self.name = name
        self.rules = LaneRules(capacity, speculate_idle_only, reserve)
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: dict[Ticket, asyncio.Future[None]] = {}

    @property
    def capacity(self) -> int:
        return self.rules.capacity

    @property
    def stats(self) -> LaneStats:
        return self.rules.stats

    def now(self) -> float:
        return self._clock()

    def hold(self, due: float | None = None, work: str = "") -> Hold:
        """``async with lane.hold(due) as ticket:`` runs the body once the lane grants a job
        due at ``due`` (default: now); ``work`` names the kind of job in the lane's stats.

        Cancelling the waiting task leaves the queue; leaving the body frees the run.
        """
        return Hold(self, due, work)

    def speculate(self, work: str = "") -> Speculation:
        """``with`` or ``async with lane.speculate() as ticket:`` — a speculative run if the
        lane has spare capacity, else ``None`` (drop the work).

        The body should stop early once ``ticket.yield_requested`` is set.
        """
        return Speculation(self, work)

    def should_yield(self, ticket: Ticket, due: float) -> bool:
        """Whether a run whose work is now due at ``due`` should make way: it was asked
        to, or a job more urgent than that waits. A running job's due time moves as it
        goes (a spoken answer is urgent until its first words are out, then due when
        its audio runs low); engines call this between tokens, from any thread."""
        if ticket.yield_requested:
            return True
        with self._lock:
            return self.rules.first_waiting_due() < due

    def _request(self, due: float | None, work: str) -> tuple[Ticket, asyncio.Future[None] | None]:
        with self._lock:
            now = self._clock()
            ticket = self.rules.request(now if due is None else due, now, work)
            if ticket.granted_at is not None:
                return ticket, None
            future = asyncio.get_running_loop().create_future()
            self._grants[ticket] = future
            return ticket, future

    def _speculate(self, work: str) -> Ticket | None:
        with self._lock:
            return self.rules.speculate(self._clock(), work)

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            self._grants.pop(ticket, None)
            granted = self.rules.release(ticket, self._clock())
            wake = [(t, self._grants.pop(t, None)) for t in granted]
        for granted_ticket, future in wake:
            if future is None:
                self._release(granted_ticket)  # its waiter is gone: pass the run on
            else:
                self._resolve(granted_ticket, future)

    def _resolve(self, ticket: Ticket, future: asyncio.Future[None]) -> None:
        loop = future.get_loop()
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._grant(ticket, future)
        else:
            loop.call_soon_threadsafe(self._grant, ticket, future)

    def _grant(self, ticket: Ticket, future: asyncio.Future[None]) -> None:
        if future.done():  # the waiter was cancelled meanwhile: pass the run on
            self._release(ticket)
        else:
            future.set_result(None)


class Hold:
    """The context manager of :meth:`Lane.hold` (a class: it is safe to finalise inside
    async generators that are closed late, unlike a generator-based one)."""

    __slots__ = ("_due", "_lane", "_ticket", "_work")

    def __init__(self, lane: Lane, due: float | None, work: str) -> None:
        self._lane = lane
        self._due = due
        self._work = work
        self._ticket: Ticket | None = None

    async def __aenter__(self) -> Ticket:
        ticket, future = self._lane._request(self._due, self._work)
        self._ticket = ticket
        if future is not None:
            try:
                await future
            except BaseException:
                self.release()
                raise
        return ticket

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Free the run now (idempotent): for work that outlives the ``async with`` body's
        interest, such as a thread that finishes after its reader paused."""
        if self._ticket is not None:
            ticket, self._ticket = self._ticket, None
            self._lane._release(ticket)


class Speculation:
    """The context manager of :meth:`Lane.speculate`."""

    __slots__ = ("_lane", "_ticket", "_work")

    def __init__(self, lane: Lane, work: str) -> None:
        self._lane = lane
        self._work = work
        self._ticket: Ticket | None = None

    def __enter__(self) -> Ticket | None:
        self._ticket = self._lane._speculate(self._work)
        return self._ticket

    def __exit__(self, *exc: object) -> None:
        if self._ticket is not None:
            ticket, self._ticket = self._ticket, None
            self._lane._release(ticket)

    async def __aenter__(self) -> Ticket | None:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


class Scheduler:
    """The lanes of one process, by engine key."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lanes: dict[str, Lane] = {}
        self._remote: set[str] = set()

    def lane(
        self,
        key: str,
        capacity: int = 1,
        *,
        speculate_idle_only: bool = False,
        reserve: int = 0,
        local: bool = True,
    ) -> Lane:
        """The lane for ``key``, made on first use with ``capacity`` (and ``reserve``, see
        :attr:`LaneRules.reserve`); ``local``: its work runs on this machine's cores (not a
        network backend), see :meth:`pressure`."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(
                key, capacity, clock=self._clock, speculate_idle_only=speculate_idle_only, reserve=reserve
            )
            if not local:
                self._remote.add(key)
        return lane

    def cores(self) -> Lane:
        """The lane of the work that computes on this process's CPU cores: one run per
        usable core (:func:`~rtgate.pipeline.base.usable_cores`, read on first use, after
        a worker process has taken its share). Local speech models take their runs from
        it instead of a lane of their own, so that due order, not the operating system,
        decides which of them gets a core. With two cores or more one is kept back from
        speculation (:attr:`LaneRules.reserve`)."""
        cores = usable_cores()
        return self.lane(CORES, cores, reserve=1 if cores > 1 else 0)

    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    def pressure(self) -> float:
        """The largest :meth:`LaneRules.pressure` of the local lanes now (seconds late): how
        far behind this machine's models run. A slow network backend is its own limit."""
        now = self._clock()
        local = (lane for key, lane in self._lanes.items() if key not in self._remote)
        return max((lane.rules.pressure(now) for lane in local), default=0.0)

    def now(self) -> float:
        return self._clock()


SCHEDULER = Scheduler()
"""The process's scheduler: engines take their lanes from it."""

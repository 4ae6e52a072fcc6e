"""Which llama.cpp instance and slot takes a call, so a conversation finds its prompt cached.

Contract:

* A model is loaded as :class:`Instance` s (llama.cpp servers), each with ``n_parallel``
  :class:`Slot` s. A slot's KV cache keeps the last prompt evaluated in it, and llama.cpp
  reuses its longest common prefix with the next prompt sent to that slot.
* Every call names its slot (``id_slot``): :class:`SharedModel` pins each conversation
  (``LLMRequest.conversation``) to the slot that last held its prompt. Left to itself,
  llama.cpp gives a call the idle slot whose prompt is most similar to it, and every
  conversation shares the system prompt, so a new conversation's prefill took the slot of
  an answer paused between segments, whose next segment then evaluated its whole prompt
  again (48-73 tokens, 0.36-0.54 s on one thread, measured at eight conversations).
* A conversation keeps its slot while the slot's instance has room (fewer than
  ``runs_per_instance`` calls running), even while its own previous call still runs
  there. Otherwise, and for a new conversation, it gets the free slot, on an instance
  with room, whose loss costs least to evaluate again, never one between two segments
  of an answer (:meth:`SharedModel._placing`); the slot's previous owner loses it (its
  prompt is evaluated again next time).
* A conversation that ended gives its slot up (:meth:`SharedModel.forget`), and spare
  capacity seeds blank slots with a system prompt (:meth:`SharedModel.blank`), so a new
  conversation rarely evaluates its system prompt from nothing.
* Pure bookkeeping: nothing here loads a model or waits; callers mark a slot busy for as
  long as its thread runs (:meth:`Slot.start`, :meth:`Slot.finish`) and count every
  call's prompt in :data:`PROMPT_TOKENS`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rtgate.pipeline.scheduler import Lane

MOVE_TOKENS = 64
"""A conversation whose home slot holds more than this many tokens beyond its system
prompt never leaves it: a call of a call that went on, moved to another instance because
its own was busy, evaluated its whole history there (165-363 tokens, 1.0-2.6 s on one
thread, four calls at once), where waiting for the home instance costs ~0.1 s or a
batched decode."""

STALE_S = 30.0
"""A conversation that has not used its slot for this long gives it up to a new one: a
live conversation calls the model at least every few seconds while it answers (each
segment) and again while the user speaks its next turn (the prefill)."""


@dataclass
class PromptTokens:
    """Prompt tokens of the calls to this process's llama.cpp models: ``reused`` from a
    slot's cache, ``evaluated`` (computed) otherwise. ``/metrics`` exports them."""

    evaluated: int = 0
    reused: int = 0

    def count(self, timings: dict[str, Any]) -> None:
        """Add one call's prompt, from llama.cpp's ``timings``."""
        self.evaluated += int(timings.get("prompt_n", 0))
        self.reused += int(timings.get("cache_n", 0))


PROMPT_TOKENS = PromptTokens()


@dataclass
class Instance:
    """One loaded llama.cpp server and the threads that wait on its slots."""

    server: Any
    executor: ThreadPoolExecutor
    slots: list[Slot] = field(default_factory=list)

    @property
    def active(self) -> int:
        """Calls running on it now, counted until their thread is done."""
        return sum(slot.calls for slot in self.slots)


@dataclass(eq=False)
class Slot:
    """One llama.cpp slot: its index in the instance, and whose prompt it holds."""

    instance: Instance = field(repr=False)
    index: int = 0
    owner: str | None = None
    """The conversation whose prompt this slot's cache holds (None: nobody's, or a
    call that belongs to no conversation)."""
    head: str | None = None
    """The system prompt its cache starts with (None: nothing cached yet)."""
    tokens: int = 0
    """Tokens its cache holds (prompt and generated text of its last call)."""
    answering: bool = False
    """Its owner's answer is between two segments: the next one needs this cache."""
    calls: int = 0
    """Calls running on it (llama.cpp queues a second one until the first is done)."""
    used: int = 0
    """When it was last taken (a counter: higher is more recent)."""
    taken_at: float = 0.0
    """When it was last taken (the model's clock, seconds)."""

    @property
    def busy(self) -> bool:
        return self.calls > 0

    def start(self) -> None:
        """A call's thread starts on this slot."""
        self.calls += 1

    def finish(self) -> None:
        """That call's thread is done."""
        self.calls -= 1


@dataclass
class SharedModel:
    """The instances of one model, their slots, and the scheduler lane every call to
    them takes."""

    instances: list[Instance]
    n_parallel: int
    lane: Lane
    runs_per_instance: int
    homes: dict[str, Slot] = field(default_factory=dict)
    """``LLMRequest.conversation`` → the slot whose cache holds its prompt (one owner per
    slot, so at most as many entries as slots)."""
    clock: Callable[[], float] = time.monotonic
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        for instance in self.instances:
            if not instance.slots:
                instance.slots = [Slot(instance, index) for index in range(self.n_parallel)]

    @property
    def active(self) -> int:
        return sum(instance.active for instance in self.instances)

    def pick(self, prefer: Slot | None = None, key: str | None = None, head: str | None = None) -> Slot:
        """The slot for the next call: ``prefer`` (the one that holds this answer's
        prompt), else conversation ``key``'s, while its instance has room, and always
        once it holds a long conversation (:data:`MOVE_TOKENS`); else a free slot of
        the least busy instance (:meth:`_placing`, ``head`` being the call's system
        prompt), which becomes ``key``'s.

        The cache beats an idle instance: evaluating a spoken answer's prompt again on
        another instance costs 50-130 tokens at ~5.7 ms each on one thread (0.3-0.75 s;
        measured 90 tokens in 516 ms), more than sharing the home costs (two calls batched
        on one single-thread instance decode at 30 ms a token each against 22 ms alone)."""
        if prefer is None and key is not None:
            prefer = self.homes.get(key)
        if prefer is not None and (prefer.instance.active < self.runs_per_instance or _settled(prefer, head)):
            # Even while busy: only this conversation's calls use its slot, and the one
            # running there (a prefill whose prompt llama.cpp cannot interrupt, a segment
            # stopping at its next token) ends within ~0.1 s, where moving would cost the
            # whole prompt (measured: an answer that left its busy home for an empty slot
            # evaluated 57 tokens, 398 ms).
            return self._take(prefer, key, head)
        free = [slot for instance in self.instances for slot in instance.slots if not slot.busy]
        if free:
            return self._take(min(free, key=self._placing(head)), key, head)
        # Every slot runs a call (more calls than slots): llama.cpp queues this one until
        # the least recently taken slot of the least busy instance is free.
        least_busy = min(self.instances, key=lambda instance: instance.active)
        return self._take(min(least_busy.slots, key=lambda slot: slot.used), key, head)

    def idle(self, key: str | None = None, head: str | None = None) -> Slot | None:
        """A slot on an instance running nothing (for speculative work), ``key``'s own
        first; None while every instance runs something, or while ``key``'s home
        instance does and its slot holds a long conversation (:data:`MOVE_TOKENS`)."""
        home = self.homes.get(key) if key is not None else None
        if home is not None and not home.instance.active:
            return self._take(home, key, head)
        if home is not None and _settled(home, head):
            return None  # speculation never moves a long conversation: it waits for its home
        free = [slot for instance in self.instances if not instance.active for slot in instance.slots]
        if not free:
            return None
        return self._take(min(free, key=self._placing(head)), key, head)

    def free(self, instance: Instance) -> Slot:
        """A free slot of ``instance`` for a call that belongs to no conversation."""
        free = [slot for slot in instance.slots if not slot.busy] or instance.slots
        return self._take(min(free, key=self._placing(None)), None, None)

    def blank(self, head: str) -> Slot | None:
        """A slot that no conversation has used (no system prompt cached), on an idle
        instance, now holding ``head`` for nobody; on the instance with the fewest slots
        holding ``head`` (so every instance gets some). None if there is none."""
        blank = [
            slot
            for instance in self.instances
            if not instance.active
            for slot in instance.slots
            if slot.head is None and slot.owner is None and not slot.busy
        ]
        if not blank:
            return None

        def holding(slot: Slot) -> tuple[int, int]:
            return (sum(other.head == head for other in slot.instance.slots), slot.index)

        return self._take(min(blank, key=holding), None, head)

    def forget(self, key: str) -> None:
        """Conversation ``key`` has ended: its slot (which keeps its prompt, system prompt
        first) is nobody's now, so a new conversation takes it before an empty one."""
        slot = self.homes.pop(key, None)
        if slot is not None:
            slot.owner = None
            slot.answering = False

    def _placing(self, head: str | None) -> Callable[[Slot], tuple[bool, bool, int, int, int, int]]:
        """Which free slot a call away from home takes (the smallest key):

        1. one on an instance with room (fewer than ``runs_per_instance`` calls: the
           rule that keeps a conversation at home);
        2. not one whose owner is between two segments of an answer (``answering``);
        3. the one whose loss costs least: the tokens evaluated again, by this call if the
           slot's cache does not start with its system prompt ``head`` (llama.cpp reuses
           a common prefix), and by the slot's owner if it is still alive (used within
           :data:`STALE_S`) when it comes back;
        4. one on the least busy instance, then on the one holding fewer conversations
           (so they spread);
        5. the least recently taken.

        So a new conversation takes a slot left by one that ended and holds its system
        prompt, even on a busy instance rather than an empty slot on an idle one
        (evaluating the system prompt, ~40 tokens at ~5.7 ms each on one thread, costs
        more than decoding beside one other call); else, in the first seconds of a
        burst, the slot of one that has only evaluated its system prompt and question
        (a dozen tokens to evaluate again) rather than an empty slot, but not the slot
        of a longer conversation.
        """
        stale_before = self.clock() - STALE_S
        head_tokens = estimate_tokens(head)

        def order(slot: Slot) -> tuple[bool, bool, int, int, int, int]:
            same_head = slot.head == head
            live = slot.owner is not None and slot.taken_at > stale_before
            cost = 0 if same_head else head_tokens
            if live:
                cost += slot.tokens - head_tokens if same_head else slot.tokens
            owned = sum(other.owner is not None for other in slot.instance.slots)
            full = slot.instance.active >= self.runs_per_instance
            return (full, slot.answering, max(0, cost), slot.instance.active, owned, slot.used)

        return order

    def _take(self, slot: Slot, key: str | None, head: str | None) -> Slot:
        """Record that ``slot`` now holds ``key``'s prompt, which starts with ``head`` (a
        call with no key leaves it nobody's, since it overwrites what was cached there)."""
        if slot.owner is not None and slot.owner != key and self.homes.get(slot.owner) is slot:
            del self.homes[slot.owner]
        if key is not None:
            previous = self.homes.get(key)
            if previous is not None and previous is not slot:
                previous.owner = None  # still holds this conversation's prefix, for anyone
                previous.answering = False
            self.homes[key] = slot
        if slot.owner != key:
            slot.answering = False
        slot.owner = key
        slot.head = head
        slot.used = next(self._counter)
        slot.taken_at = self.clock()
        return slot


def _settled(home: Slot, head: str | None) -> bool:
    """Whether ``home`` holds a conversation too long to move (:data:`MOVE_TOKENS`)."""
    return home.tokens - estimate_tokens(head) > MOVE_TOKENS


def estimate_tokens(text: str | None) -> int:
    """Roughly the tokens of a system message (English: ~4 characters a token, plus the
    chat template's markers)."""
    return len(text) // 4 + 4 if text else 0

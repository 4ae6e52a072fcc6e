"""Session slots: what ``max_sessions`` counts.

A :class:`SessionSlot` is taken when a session is admitted and given back exactly once,
when the session is really gone — every task it owned has ended. A session whose tasks
outlive the bounded stop (:meth:`~rtgate.transport.connection.SessionRunner.stop`) keeps
its slot until the last of them ends, so ``max_sessions`` and ``/healthz`` never count
fewer sessions than the process holds; the handler itself returns at once either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol


class SlotCounter(Protocol):
    """What keeps the count (:class:`~rtgate.server.host.SessionHost`)."""

    active_sessions: int


class SessionSlot:
    """One admitted session in ``state.active_sessions``; see the module docstring."""

    __slots__ = ("_held", "_pending", "_state")

    def __init__(self, state: SlotCounter) -> None:
        self._state = state
        self._held = True
        self._pending: set[asyncio.Task[Any]] = set()
        state.active_sessions += 1

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        if self._held:
            self._held = False
            self._state.active_sessions -= 1

    def release_when_done(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Give the slot back once every task in ``tasks`` has ended (now if none runs)."""
        self._pending = {task for task in tasks if not task.done()}
        if not self._pending:
            self.release()
            return
        for task in self._pending:
            task.add_done_callback(self._one_done)

    def _one_done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not self._pending:
            self.release()


__all__ = ["SessionSlot"]

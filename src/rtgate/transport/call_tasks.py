"""What every call (WebRTC, SIP, relayed SIP) does the same way around its media: own its
tasks and end them together, and end the call when the caller's media stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any


class CallTasks:
    """The tasks one call owns: named after the call, and all cancelled and awaited at its
    end (:meth:`cancel_all`); nothing is fire-and-forget."""

    def __init__(self, call_id: str) -> None:
        self._call_id = call_id
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self._call_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        """Cancel every task but the one calling, and wait until each has ended."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def watch_media(last_media: Callable[[], float], timeout_s: float,
                      on_idle: Callable[[str], None]) -> None:
    """Call ``on_idle(reason)`` once no media has arrived for ``timeout_s`` (``last_media()``
    is the :func:`time.monotonic` of the latest packet)."""
    while True:
        idle = time.monotonic() - last_media()
        if idle >= timeout_s:
            on_idle(f"no RTP from the caller for {timeout_s:g} s")
            return
        # A deadline check, not ordering: wake when the timeout could next expire.
        await asyncio.sleep(timeout_s - idle)

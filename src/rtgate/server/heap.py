"""Keeping the cycle collector's pauses off the event loop's tail latency.

CPython's cycle collector stops the whole process while it scans; a full (generation 2)
collection scans every tracked object. After start-up a server holds ≈ 80 k of them
(``--pipeline builtin``: modules, pydantic schemas, the models' Python wrappers) that
live as long as the process: a full collection of that heap took 48–58 ms on the 2-CPU
benchmark machine.
Under load full collections are rare (about one per 20–40 s at 150 sessions), but each
delays every session's events by its whole length (docs/benchmarks.md, Load).

:func:`freeze_startup_heap` collects once, then moves every surviving object into the
permanent generation (``gc.freeze``), which later collections skip. Frozen objects are
still freed by reference counting; only cycles among them would now stay (start-up
objects are not expected to form garbage cycles later). Later collections scan only what
sessions created, and the full ones are triggered by that smaller population's growth.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("rtgate")


def freeze_startup_heap() -> int:
    """Collect, then freeze what survives; returns the number of objects frozen.

    Call once, when start-up is complete and before serving: the process's owner does it
    (``rtgate serve``), not a library that happens to build an app.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects left out of later cycle collections", frozen)
    return frozen


__all__ = ["freeze_startup_heap"]

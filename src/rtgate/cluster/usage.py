"""Usage counters per key id: a local buffer that can be merged and handed off in batches.

A key's usage is the five :data:`USAGE_FIELDS`, all floats (counts included, so one
``HINCRBYFLOAT`` per field adds them in Redis). A :class:`UsageBuffer` only grows until
:meth:`UsageBuffer.take` empties it; its size is bounded by the number of key ids, not by
the number of additions. Non-finite values are dropped. Nothing here does I/O.
"""

from __future__ import annotations

import math

USAGE_FIELDS: tuple[str, ...] = ("sessions", "audio_in_s", "audio_out_s", "input_tokens", "output_tokens")

Usage = dict[str, dict[str, float]]
"""key id -> field -> total."""


def zero() -> dict[str, float]:
    return dict.fromkeys(USAGE_FIELDS, 0.0)


def merge(into: Usage, more: Usage) -> Usage:
    """Add ``more`` into ``into`` (in place) and return it."""
    for key_id, fields in more.items():
        totals = into.setdefault(key_id, zero())
        for name, value in fields.items():
            totals[name] = totals.get(name, 0.0) + value
    return into


def copy(usage: Usage) -> Usage:
    return {key_id: dict(fields) for key_id, fields in usage.items()}


class UsageBuffer:
    """Usage counted in this process and not yet handed to the shared store."""

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: Usage = {}

    def add(
        self,
        key_id: str,
        *,
        sessions: int = 0,
        audio_in_s: float = 0.0,
        audio_out_s: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        # A NaN or infinity would poison every total it is added to (and Redis refuses it),
        # so such a value is dropped rather than counted.
        values = [float(v) if math.isfinite(v) else 0.0
                  for v in (sessions, audio_in_s, audio_out_s, input_tokens, output_tokens)]
        if not any(values):
            return
        totals = self._usage.setdefault(key_id, zero())
        for name, value in zip(USAGE_FIELDS, values, strict=True):
            totals[name] += value

    def __bool__(self) -> bool:
        return bool(self._usage)

    def peek(self) -> Usage:
        """A copy of the buffered usage; the buffer keeps it."""
        return copy(self._usage)

    def take(self) -> Usage:
        """The buffered usage; the buffer is empty afterwards."""
        usage, self._usage = self._usage, {}
        return usage


class BufferedUsage:
    """``ClusterStore.add_usage`` for stores that count usage in a :class:`UsageBuffer`
    (``self._buffer``) first: the in-memory store keeps it there, Redis publishes it."""

    _buffer: UsageBuffer

    def add_usage(
        self,
        key_id: str,
        *,
        sessions: int = 0,
        audio_in_s: float = 0.0,
        audio_out_s: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        self._buffer.add(key_id, sessions=sessions, audio_in_s=audio_in_s, audio_out_s=audio_out_s,
                         input_tokens=input_tokens, output_tokens=output_tokens)

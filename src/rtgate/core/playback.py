"""Server-side playback as the core sees it: what was handed to the player, what it played.

On a WebRTC or SIP call the server, not the client, plays the assistant's audio
(docs/protocol.md, Server events and Event sequences: Barge-in), so the session knows how
much of each item the user heard. :class:`Playback` keeps that account for the core; the
core decides every cut-off from it and the edge only carries them out:

* the core hands audio to the player as :class:`~rtgate.core.effects.PlayAudio` (PCM16 at
  the player's :attr:`Playback.sample_rate`) instead of sending
  ``response.output_audio.delta``, and :class:`~rtgate.core.effects.FinishPlayback` when a
  response's audio is complete;
* the player reports progress back: :meth:`Session.on_playback_started`,
  :meth:`Session.on_audio_played` (bytes of one part played) and
  :meth:`Session.on_playback_stopped` (the end of a finished response's audio);
* a cut-off — barge-in, or the client's ``output_audio_buffer.clear`` — is decided by the
  core, which emits :class:`~rtgate.core.effects.ClearOutputAudio` and
  ``output_audio_buffer.cleared``, and **truncates the assistant item to what was played**
  (``conversation.item.truncated``).

State of one response's playback (responses play in the order of their first audio; the
first one listed is the one playing or next to play, the *head*):

========== ====================== ==============================================
state      input                  next
========== ====================== ==============================================
(none)     audio queued           queued (``PlayAudio``)
queued     response ended         ended (``FinishPlayback``)
queued     clear                  (none); the head's cut is truncated at its
                                  ``response.done`` if that says ``cancelled``
ended      clear                  (none); the head's cut is truncated at once
ended      ``stopped`` reported   (none)
========== ====================== ==============================================

Truncation rules: a response cut while it is still generating is truncated when its
``response.done`` (status ``cancelled``) goes out, so the item is final; a response that
had finished generating but was still playing is truncated at once. Played time is
rounded down, so the conversation never claims audio the user did not hear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_SAMPLE_RATE = 24_000
"""The player's rate unless the edge says otherwise (a WebRTC call's track)."""


@dataclass(slots=True)
class _Part:
    """One assistant audio part: bytes handed to the player and bytes it played (PCM16 at
    the player's rate), and its length in the item's own format (the conversation's view)."""

    queued_bytes: int = 0
    played_bytes: int = 0
    wire_ms: float = 0.0


@dataclass(slots=True)
class _Response:
    parts: dict[tuple[str, int], _Part] = field(default_factory=dict)
    ended: bool = False
    """Its ``response.done`` has gone out while its audio still plays."""


@dataclass(frozen=True, slots=True)
class Cut:
    """Audio dropped from playback: which response, and how much of each part was played."""

    response_id: str
    played: tuple[tuple[str, int, int], ...] = ()
    """``(item_id, content_index, audio_end_ms)`` for every part with unplayed audio."""


class Playback:
    """The account of one call's playback; see the module docstring. Pure bookkeeping:
    the :class:`~rtgate.core.session.Session` decides what to emit from it."""

    def __init__(self, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        """Rate of the PCM16 the player takes (the edge sets it before the session starts)."""
        self._responses: dict[str, _Response] = {}
        self._pending: dict[str, Cut] = {}
        """Cuts of responses still generating, truncated at their ``response.done``."""

    @property
    def head(self) -> str | None:
        """The response whose audio is playing or next to play, if any."""
        return next(iter(self._responses), None)

    def has(self, response_id: str) -> bool:
        return response_id in self._responses

    def head_ended(self) -> bool:
        """Whether the head response has finished generating (its audio still plays)."""
        head = self.head
        return head is not None and self._responses[head].ended

    def queued(self, response_id: str, item_id: str, content_index: int, nbytes: int,
               wire_ms: float) -> None:
        """``nbytes`` of PCM16 of one part were handed to the player."""
        response = self._responses.setdefault(response_id, _Response())
        part = response.parts.setdefault((item_id, content_index), _Part())
        part.queued_bytes += nbytes
        part.wire_ms += wire_ms

    def played(self, response_id: str, item_id: str, content_index: int, nbytes: int) -> None:
        """The player played ``nbytes`` more of one part (unknown parts are ignored: their
        audio was cleared)."""
        response = self._responses.get(response_id)
        part = response.parts.get((item_id, content_index)) if response is not None else None
        if part is not None:
            part.played_bytes += nbytes

    def end(self, response_id: str) -> bool:
        """The response finished generating; returns whether its audio is still with the
        player (then ``stopped`` will be reported when it has played)."""
        response = self._responses.get(response_id)
        if response is None:
            return False
        response.ended = True
        return True

    def stopped(self, response_id: str) -> None:
        self._responses.pop(response_id, None)

    def clear(self) -> Cut | None:
        """Everything queued is dropped; returns what was cut of the head, if anything."""
        head = self.head
        if head is None:
            return None
        ms_per_byte = 1000 / (2 * self.sample_rate)
        played = tuple(
            (item_id, index, math.floor(min(part.played_bytes * ms_per_byte, part.wire_ms)))
            for (item_id, index), part in self._responses[head].parts.items()
            if part.queued_bytes > part.played_bytes
        )
        self._responses.clear()
        return Cut(head, played)

    def keep_cut(self, cut: Cut) -> None:
        """Hold ``cut`` until its response ends (:meth:`take_cut`)."""
        self._pending[cut.response_id] = cut

    def take_cut(self, response_id: str) -> Cut | None:
        return self._pending.pop(response_id, None)

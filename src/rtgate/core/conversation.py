"""The conversation: an ordered list of items (docs/protocol.md, Conversation items and Client events).

Items are kept in their wire form without audio bytes; audio lives beside them (as sent,
in the session's format) so that ``conversation.item.retrieve`` can return it and
``conversation.item.truncate`` can cut it. Assistant audio also keeps an alignment of
transcript text to audio time, so truncation drops exactly the unheard transcript.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import RealtimeError, echo

ROOT = "root"


@dataclass(slots=True)
class StoredItem:
    wire: dict[str, Any]
    # content_index → audio bytes in ``audio_format``
    audio: dict[int, bytes | bytearray] = field(default_factory=dict)
    audio_format: str = "audio/pcm"
    # content_index → [(audio_ms_end, transcript_chars)] for assistant audio
    alignment: dict[int, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    def audio_bytes(self) -> int:
        return sum(len(a) for a in self.audio.values())


def not_found(item_id: str, param: str = "item_id") -> RealtimeError:
    return RealtimeError(
        f"Item with item_id '{echo(item_id)}' not found in the conversation.",
        "item_not_found",
        param,
    )


class Conversation:
    """Ordered items with id lookup. Positions are list indexes; sizes stay small."""

    def __init__(self, conversation_id: str, *, max_items: int, max_audio_bytes: int) -> None:
        self.id = conversation_id
        self._items: list[StoredItem] = []
        self._by_id: dict[str, StoredItem] = {}
        self._max_items = max_items
        self._max_audio_bytes = max_audio_bytes
        self._audio_bytes = 0
        self.evicted: list[str] = []
        """Ids of items dropped by the ``max_items`` limit and not yet announced; the session
        announces each with ``conversation.item.deleted`` (a drop is never silent)."""

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._by_id

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[StoredItem]:
        return list(self._items)

    def get(self, item_id: str) -> StoredItem:
        try:
            return self._by_id[item_id]
        except KeyError:
            raise not_found(item_id) from None

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def previous_id(self, item_id: str) -> str | None:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                return self._items[index - 1].id if index else None
        return None

    def insert(self, item: StoredItem, previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (``None``: at the end; ``"root"``: first).

        Returns the id of the item now before it. Raises for an unknown or duplicate id.
        """
        if item.id in self._by_id:
            raise RealtimeError(
                f"Item with id '{echo(item.id)}' already exists in the conversation.",
                "item_already_exists",
                "item.id",
            )
        if previous_item_id is None:
            position = len(self._items)
        elif previous_item_id == ROOT:
            position = 0
        else:
            if previous_item_id not in self._by_id:
                raise not_found(previous_item_id, "previous_item_id")
            position = self._index(previous_item_id) + 1
        self._items.insert(position, item)
        self._by_id[item.id] = item
        self._audio_bytes += item.audio_bytes()
        # The limit may drop older items, which shifts positions: look the neighbour up after.
        self._enforce_limits(keep=item)
        return self.previous_id(item.id)

    def delete(self, item_id: str) -> StoredItem:
        item = self.get(item_id)
        self._items.remove(item)
        del self._by_id[item_id]
        self._audio_bytes -= item.audio_bytes()
        return item

    def add_audio(self, item: StoredItem, content_index: int, data: bytes) -> None:
        existing = item.audio.get(content_index)
        if isinstance(existing, bytearray):
            existing += data  # amortised O(1): responses append thousands of chunks
        else:
            item.audio[content_index] = bytearray(existing or b"") + data
        if item.id in self._by_id:
            self._audio_bytes += len(data)
            self._enforce_limits()

    def replace_audio(self, item: StoredItem, content_index: int, data: bytes) -> None:
        old = len(item.audio.get(content_index, b""))
        item.audio[content_index] = data
        if item.id in self._by_id:
            self._audio_bytes += len(data) - old

    def retrieve_wire(self, item_id: str) -> dict[str, Any]:
        """The item with its audio bytes, as ``conversation.item.retrieved`` carries it."""
        item = self.get(item_id)
        wire = copy.deepcopy(item.wire)
        for index, data in item.audio.items():
            content = wire.get("content") or []
            if index < len(content):
                content[index]["audio"] = base64.b64encode(data).decode("ascii")
        return wire

    def _index(self, item_id: str) -> int:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                return index
        raise not_found(item_id)

    def _enforce_limits(self, keep: StoredItem | None = None) -> None:
        while len(self._items) > self._max_items:
            # The item just inserted is never the one dropped (it was announced as added).
            dropped = self._items.pop(1 if self._items[0] is keep else 0)
            del self._by_id[dropped.id]
            self.evicted.append(dropped.id)
            self._audio_bytes -= dropped.audio_bytes()
        # Oldest audio goes first; transcripts and text stay in context.
        for item in self._items:
            if self._audio_bytes <= self._max_audio_bytes:
                break
            self._audio_bytes -= item.audio_bytes()
            item.audio.clear()

"""Identifiers in OpenAI's formats: ``event_…``, ``item_…``, ``resp_…``, ``call_…``
(docs/protocol.md, Framing and identifiers)."""

from __future__ import annotations

import random
import string

_ALPHABET = string.ascii_letters + string.digits


class IdFactory:
    """Makes ids; pass a seeded ``random.Random`` for deterministic tests.

    These ids are not secrets (keys are minted with :mod:`secrets` elsewhere).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def new(self, prefix: str, length: int = 21) -> str:
        return f"{prefix}_{''.join(self._rng.choices(_ALPHABET, k=length))}"

    def event(self) -> str:
        return self.new("event")

    def item(self) -> str:
        return self.new("item")

    def response(self) -> str:
        return self.new("resp")

    def call(self) -> str:
        return self.new("call", 16)

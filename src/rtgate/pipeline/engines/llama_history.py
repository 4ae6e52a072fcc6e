"""How much of a long conversation a local model reads: the recent turns that fit.

A call that goes on grows its prompt with every turn, and on a CPU a long prompt makes
every token dearer: SmolLM2-135M on one thread decodes 21 ms a token with 50 tokens of
context and 35 ms with 1,450 (docs/benchmarks.md, "A call that goes on"); past a slot's
context llama.cpp refuses the call outright. :func:`recent_history` keeps the system
message and the most recent messages within a token budget.

It drops the oldest messages in whole *chunks* (half the budget), not one turn at a time:
the kept history then starts at the same message for many turns, so the slot's prompt
cache keeps serving it, and each cut costs one shift of the cached tokens (llama.cpp's
``n_cache_reuse``) instead of evaluating the rest again. The rule is stateless — the same
messages give the same cut — so a prefill and the answer it prepares, or two segments of
one answer, always agree. The kept history starts at a user message: the model never
reads an answer to a question it no longer has.

Token counts are estimates (:func:`estimate_message_tokens`; on numbers and short
lines the real count ran ~30 % higher): the engine's default budget is half a slot, which
leaves room for the answer and for the estimate being off.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

CHARS_PER_TOKEN = 4
"""English text in SmolLM2's tokenizer (and most BPE vocabularies): about 4 characters a token."""
MESSAGE_OVERHEAD_TOKENS = 4
"""The chat template's markers around each message (ChatML: ``<|im_start|>role\\n`` …
``<|im_end|>\\n``)."""


def estimate_message_tokens(message: dict[str, Any]) -> int:
    """Roughly the tokens ``message`` (normalised: plain-text ``content``) takes in a prompt."""
    return len(str(message.get("content") or "")) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS


def recent_history(messages: Sequence[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """``messages`` (normalised) cut to about ``budget`` tokens; see the module docstring.

    The leading system message and the last message are always kept. When the rest is over
    budget, the oldest messages worth at least the excess, rounded up to a whole number of
    chunks (half the budget left after the system message), are dropped, and then any
    messages before the next user message. Under budget, ``messages`` is returned as is.
    """
    head = list(messages[:1]) if messages and messages[0].get("role") == "system" else []
    rest = list(messages[len(head):])
    allowed = budget - sum(estimate_message_tokens(m) for m in head)
    sizes = [estimate_message_tokens(m) for m in rest]
    excess = sum(sizes) - allowed
    if excess <= 0 or len(rest) <= 1:
        return [*head, *rest]
    chunk = max(1, allowed // 2)
    drop = math.ceil(excess / chunk) * chunk
    cut, dropped = 0, 0
    while cut < len(rest) - 1 and dropped < drop:
        dropped += sizes[cut]
        cut += 1
    while cut < len(rest) - 1 and rest[cut].get("role") != "user":
        cut += 1
    return [*head, *rest[cut:]]

"""The recent history a local model reads (pure: pipeline/engines/llama_history.py)."""

from __future__ import annotations

import itertools
from typing import Any

from rtgate.pipeline.engines.llama_history import estimate_message_tokens, recent_history

SYSTEM = {"role": "system", "content": "You are a friendly voice assistant."}


def turns(n: int, *, chars: int = 160) -> list[dict[str, Any]]:
    """n question/answer pairs of about chars/4 + 4 tokens each."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"role": "user", "content": f"Q{i:03d} " + "q" * (chars - 5)})
        out.append({"role": "assistant", "content": f"A{i:03d} " + "a" * (chars - 5)})
    return out


def tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_message_tokens(m) for m in messages)


def test_a_conversation_under_budget_is_read_whole() -> None:
    messages = [SYSTEM, *turns(3), {"role": "user", "content": "And now?"}]
    assert recent_history(messages, 1024) == messages


def test_over_budget_keeps_the_system_message_the_last_message_and_fits() -> None:
    messages = [SYSTEM, *turns(30), {"role": "user", "content": "And now?"}]
    kept = recent_history(messages, 1024)
    assert tokens(messages) > 1024
    assert kept[0] == SYSTEM
    assert kept[-1] == messages[-1]
    assert tokens(kept) <= 1024
    assert kept[1:] == messages[-(len(kept) - 1):]  # a contiguous run of the most recent messages


def test_the_kept_history_starts_at_a_user_message() -> None:
    for n in range(10, 40):
        kept = recent_history([SYSTEM, *turns(n), {"role": "user", "content": "Next?"}], 1024)
        assert kept[1]["role"] == "user"


def test_the_cut_stays_put_for_many_turns_so_the_cache_keeps_serving() -> None:
    """The first kept message changes only when the history has grown by a chunk (half
    the budget), not at every turn."""
    firsts = []
    for n in range(12, 60):
        kept = recent_history([SYSTEM, *turns(n), {"role": "user", "content": "Next?"}], 1024)
        firsts.append(kept[1]["content"][:4])
    changes = sum(1 for a, b in itertools.pairwise(firsts) if a != b)
    # Each pair is ~88 tokens: a chunk of (1024 - 12) // 2 tokens is ~5-6 pairs.
    assert 0 < changes <= len(firsts) // 4


def test_the_same_messages_give_the_same_cut() -> None:
    messages = [SYSTEM, *turns(25), {"role": "user", "content": "Again?"}]
    assert recent_history(messages, 800) == recent_history(list(messages), 800)


def test_a_prefill_and_its_answer_agree_when_the_transcript_grows_by_a_word() -> None:
    history = [SYSTEM, *turns(25)]
    partial = recent_history([*history, {"role": "user", "content": "What is the"}], 1024)
    final = recent_history([*history, {"role": "user", "content": "What is the capital?"}], 1024)
    assert partial[:-1] == final[:-1]


def test_a_huge_last_message_is_kept_alone() -> None:
    huge = {"role": "user", "content": "x" * 20_000}
    kept = recent_history([SYSTEM, *turns(4), huge], 1024)
    assert kept == [SYSTEM, huge]


def test_without_a_system_message() -> None:
    messages = [*turns(30), {"role": "user", "content": "Go on."}]
    kept = recent_history(messages, 512)
    assert kept[0]["role"] == "user"
    assert kept[-1] == messages[-1]
    assert tokens(kept) <= 512


def test_a_single_message_is_never_dropped() -> None:
    only = [{"role": "user", "content": "y" * 10_000}]
    assert recent_history(only, 100) == only

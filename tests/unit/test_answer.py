"""Answers that behave (pipeline/answer.py, context.build_request): preamble, shapes, cuts."""

from __future__ import annotations

from rtgate.core.effects import ContextItem, ResponsePlan
from rtgate.pipeline.answer import (
    BRIEF,
    SENTENCE_HARD_TOKENS,
    SENTENCE_LAST_TOKENS,
    VOICE_PREAMBLE,
    AnswerCutter,
    AnswerLimit,
    answer_limit_for,
)
from rtgate.pipeline.context import build_request


def plan(instructions: str = "Be nice.", *said: tuple[str, str]) -> ResponsePlan:
    items = [
        ContextItem({"type": "message", "id": f"i{n}", "role": role,
                     "content": [{"type": "input_text", "text": text}]})
        for n, (role, text) in enumerate(said)
    ]  # fmt: skip
    return ResponsePlan("resp_1", instructions, items, ["audio"], "alloy", 1.0, {}, [], "auto", None, True)


def cut(limit: AnswerLimit, pieces: list[str]) -> tuple[str, bool]:
    """Feed ``pieces`` as tokens; the kept text and whether the cutter ended the answer."""
    cutter = AnswerCutter(limit)
    kept = ""
    for piece in pieces:
        text, ended = cutter.feed(piece)
        kept += text
        if ended:
            return kept, True
    return kept, False


def tokens(text: str) -> list[str]:
    """Word-sized pieces with their leading space, as a BPE model streams them."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


# ----------------------------------------------------------------- build_request


def test_preamble_follows_the_instructions_in_one_system_message() -> None:
    """With voice_preamble the system message is the instructions, then the preamble."""
    request = build_request(plan("Speak like a pirate.", ("user", "Hi")), voice_preamble=True)
    assert request.messages[0] == {"role": "system", "content": f"Speak like a pirate.\n{VOICE_PREAMBLE}"}
    assert request.messages[1] == {"role": "user", "content": "Hi"}
    assert request.answer == BRIEF


def test_without_the_preamble_the_request_is_unchanged() -> None:
    """voice_preamble off (network LLMs by default): instructions alone, no answer limit."""
    request = build_request(plan("Speak like a pirate.", ("user", "Hi")))
    assert request.messages[0] == {"role": "system", "content": "Speak like a pirate."}
    assert request.answer is None


def test_instructions_alone_become_the_users_turn() -> None:
    """An out-of-band "Reply with ..." with no conversation is asked as the user's turn."""
    request = build_request(plan("Reply with exactly one word: done."), voice_preamble=True)
    assert request.messages[-1] == {"role": "user", "content": "Reply with exactly one word: done."}
    assert request.answer is not None and request.answer.words == 1


def test_instructions_shape_wins_over_the_users() -> None:
    """Session or response instructions are honoured first, then the user's last message."""
    request = build_request(
        plan("Answer in one short sentence.", ("user", "Give me a list of three fruits.")), voice_preamble=True
    )
    assert request.answer is not None and request.answer.sentences == 1 and request.answer.items is None


# ----------------------------------------------------------------- shapes


def test_shapes_are_read_from_plain_phrases() -> None:
    """one word, yes or no, N sentences, a list of three, in detail; else brief."""
    assert answer_limit_for(None, "Reply with exactly one word: done.").words == 1
    assert answer_limit_for(None, "Describe it in two words.").words == 2
    yes_no = answer_limit_for(None, "Is the sky blue? Answer yes or no.")
    assert yes_no.sentences == 1 and yes_no.grammar and '"Yes"' in yes_no.grammar
    assert answer_limit_for("Answer in one short sentence.", None).sentences == 1
    assert answer_limit_for(None, "Explain it in three sentences.").sentences == 3
    assert answer_limit_for(None, "Give me a list of three fruits.").items == 3
    assert answer_limit_for(None, "Name three animals.").items == 3
    long = answer_limit_for(None, "Tell me a story about a dragon.")
    assert long.sentences is None and long.soft_tokens == 160
    assert answer_limit_for("Keep answers short.", "How long is the Nile?") == BRIEF


# ----------------------------------------------------------------- cutter


def test_brief_answer_ends_after_two_sentences() -> None:
    """The piece that confirms the second sentence's end is not kept."""
    text, ended = cut(BRIEF, tokens("Paris is lovely. It is sunny today. The Seine is calm."))
    assert ended and text == "Paris is lovely. It is sunny today."


def test_one_sentence_ends_at_the_first_full_stop_not_at_a_number() -> None:
    """3.5 and "1." are not sentence ends; the first real one is."""
    limit = answer_limit_for("Answer in one sentence.", None)
    text, ended = cut(limit, [*tokens("It is 3"), ".", "5", *tokens(" degrees! More soon.")])
    assert ended and text == "It is 3.5 degrees!"


def test_one_word_keeps_the_first_word_and_its_punctuation() -> None:
    text, ended = cut(answer_limit_for(None, "one word please"), tokens("Done. I am happy to help."))
    assert ended and text == "Done."


def test_list_of_three_ends_after_the_third_item() -> None:
    limit = answer_limit_for(None, "Give me a list of three fruits.")
    pieces = ["Here", " are", " three", ":", "\n", "1", ".", " Apple", "\n", "2", ".", " Pear", "\n", "3", ".",
              " Plum", "\n", "4", ".", " Fig"]  # fmt: skip
    text, ended = cut(limit, pieces)
    assert ended and text == "Here are three:\n1. Apple\n2. Pear\n3. Plum"


def test_soft_budget_ends_at_the_next_sentence_end() -> None:
    """Past the soft budget a long first sentence ends the answer at its full stop."""
    limit = AnswerLimit(sentences=5, soft_tokens=6, hard_tokens=None)
    text, ended = cut(limit, tokens("one two three four five six seven eight. nine ten."))
    assert ended and text == "one two three four five six seven eight."


def test_hard_budget_ends_at_a_clause() -> None:
    """A run-on sentence past the hard budget ends at its next comma."""
    limit = AnswerLimit(sentences=1, soft_tokens=None, hard_tokens=4)
    text, ended = cut(limit, tokens("a b c d e f, g h i j"))
    assert ended and text == "a b c d e f,"


def test_sentence_budgets_scale_with_the_sentences_asked_for() -> None:
    """One sentence: clause end past 20 tokens, word end past 26; N sentences: N times."""
    one = answer_limit_for("Answer in one short sentence.", None)
    assert (one.hard_tokens, one.last_tokens) == (SENTENCE_HARD_TOKENS, SENTENCE_LAST_TOKENS)
    two = answer_limit_for(None, "Explain it in two sentences.")
    assert (two.hard_tokens, two.last_tokens) == (2 * SENTENCE_HARD_TOKENS, 2 * SENTENCE_LAST_TOKENS)
    assert BRIEF.last_tokens is None


def test_one_sentence_ends_at_a_clause_past_its_hard_budget() -> None:
    """A long single sentence is cut at the first comma past 20 tokens, not at the next."""
    limit = answer_limit_for("Answer in one sentence.", None)
    words = [f"w{n}" for n in range(SENTENCE_HARD_TOKENS + 2)]
    text, ended = cut(limit, tokens(" ".join(words) + ", more words here, and more."))
    assert ended and text == " ".join(words) + ","


def test_one_sentence_without_a_clause_ends_at_a_word_past_its_last_budget() -> None:
    """No comma and no full stop: the sentence ends at the first word end found past 26 tokens."""
    limit = answer_limit_for("Answer in one sentence.", None)
    words = [f"w{n}" for n in range(SENTENCE_LAST_TOKENS + 5)]
    text, ended = cut(limit, tokens(" ".join(words) + "."))
    assert ended and text == " ".join(words[:SENTENCE_LAST_TOKENS])


def test_last_budget_never_cuts_inside_a_word() -> None:
    """A word streamed in several pieces is kept whole; the cut comes at the space after it."""
    limit = AnswerLimit(sentences=1, soft_tokens=None, hard_tokens=None, last_tokens=2)
    text, ended = cut(limit, ["The", " photo", "syn", "thesis", " of", " plants"])
    assert ended and text == "The photosynthesis"


def test_short_answer_is_left_alone() -> None:
    text, ended = cut(BRIEF, tokens("Hello there!"))
    assert not ended and text == "Hello there!"

"""The embedded LLM (SmolLM2-135M on llama.cpp): streaming, tools, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest

from rtgate.pipeline.base import (
    BackendError,
    Finish,
    LLMChunk,
    LLMRequest,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from rtgate.pipeline.engines.llama import LlamaCppLLM
from rtgate.pipeline.engines.llama_slots import PROMPT_TOKENS

pytestmark = [pytest.mark.asyncio, pytest.mark.models]

SYSTEM = {"role": "system", "content": "You are a friendly voice assistant. Answer briefly."}
WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec(name="get_time", description="Get the current time in a timezone.", parameters={})


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    return LlamaCppLLM(max_output_tokens=64)


def ask(text: str, **kw: object) -> LLMRequest:
    return LLMRequest(messages=[SYSTEM, {"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def collect(llm: LlamaCppLLM, request: LLMRequest) -> list[LLMChunk]:
    return [chunk async for chunk in llm.stream(request)]


def text_of(chunks: list[LLMChunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


async def test_greeting_streams_text_then_usage_and_finish(llm: LlamaCppLLM) -> None:
    """A greeting yields text deltas, one Usage, then Finish."""
    chunks = await collect(llm, ask("Hello! How are you today?"))
    assert text_of(chunks).strip()
    usage = [c for c in chunks if isinstance(c, Usage)]
    assert len(usage) == 1 and usage[0].input_tokens > 0 and usage[0].output_tokens > 0
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason in ("stop", "length")


async def test_weather_question_calls_the_tool_with_json_arguments(llm: LlamaCppLLM) -> None:
    """With tool_choice auto, a weather question yields get_weather with {"city": ...}."""
    chunks = await collect(llm, ask("What's the weather in Paris?", tools=[WEATHER, TIME]))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name == "get_weather" and calls[0].call_id
    arguments = json.loads("".join(c.arguments for c in calls))
    assert isinstance(arguments, dict) and isinstance(arguments["city"], str)
    assert chunks[-1] == Finish("tool_calls")
    assert not text_of(chunks)


async def test_named_tool_choice_forces_that_tool(llm: LlamaCppLLM) -> None:
    """tool_choice naming a function always calls it, with arguments valid for its schema."""
    chunks = await collect(llm, ask("Hi there", tools=[WEATHER], tool_choice="get_weather"))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name == "get_weather"
    assert "city" in json.loads("".join(c.arguments for c in calls))


async def test_tool_choice_none_answers_in_words(llm: LlamaCppLLM) -> None:
    """tool_choice none never calls a tool."""
    chunks = await collect(llm, ask("What's the weather in Paris?", tools=[WEATHER], tool_choice="none"))
    assert not [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert text_of(chunks).strip()


async def test_unknown_tool_choice_is_a_clear_error(llm: LlamaCppLLM) -> None:
    """A tool_choice that names no tool fails with invalid_tool_choice."""
    with pytest.raises(BackendError) as info:
        await collect(llm, ask("Hi", tools=[WEATHER], tool_choice="get_stock_price"))
    assert info.value.code == "invalid_tool_choice"
    assert "get_weather" in info.value.message


async def test_history_with_a_tool_round_trip_continues_in_words(llm: LlamaCppLLM) -> None:
    """Assistant tool calls and tool outputs in the history are accepted."""
    history = [
        SYSTEM,
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temperature_c": 21, "sky": "sunny"}'},
    ]
    chunks = await collect(llm, LLMRequest(messages=history, tools=[WEATHER], tool_choice="none"))
    assert text_of(chunks).strip()


async def test_cancelling_mid_stream_stops_generation(llm: LlamaCppLLM) -> None:
    """Closing the stream stops llama.cpp at the next token: the single slot frees at once."""
    long = LLMRequest(
        messages=[SYSTEM, {"role": "user", "content": "Tell me a very long story."}],
        max_output_tokens=2000,
    )
    stream = llm.stream(long)
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    # 2000 tokens at ~80 tok/s would hold the only slot for ~25 s if generation went on.
    started = time.monotonic()
    chunks = await collect(llm, ask("Hi", max_output_tokens=4))
    assert time.monotonic() - started < 3.0
    assert isinstance(chunks[-1], Finish)


async def test_consumer_task_cancellation_stops_generation(llm: LlamaCppLLM) -> None:
    """Cancelling the consuming task (barge-in) also frees the slot promptly."""
    first = asyncio.Event()

    async def consume() -> None:
        long = LLMRequest(
            messages=[SYSTEM, {"role": "user", "content": "Count to one thousand."}],
            max_output_tokens=2000,
        )
        async for _ in llm.stream(long):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    await collect(llm, ask("Hi", max_output_tokens=4))
    assert time.monotonic() - started < 3.0


async def test_concurrent_sessions_share_the_model(llm: LlamaCppLLM) -> None:
    """Two sessions generating at once both finish (queued on the slot)."""
    results = await asyncio.gather(
        collect(llm, ask("Hello!", max_output_tokens=8)),
        collect(llm, ask("Hi!", max_output_tokens=8)),
    )
    assert all(isinstance(r[-1], Finish) for r in results)


async def test_missing_model_is_a_backend_error() -> None:
    """A GGUF path that does not exist fails with llm_unavailable."""
    with pytest.raises(BackendError) as info:
        await collect(LlamaCppLLM("/nonexistent/model.gguf"), ask("Hi"))  # type: ignore[arg-type]
    assert info.value.code == "llm_unavailable"


async def test_required_with_several_tools_calls_one_of_them(llm: LlamaCppLLM) -> None:
    """tool_choice required: the model picks a tool name under a grammar; never plain text."""
    request = ask("What time is it in Tokyo?", tools=[WEATHER, TIME], tool_choice="required")
    chunks = await collect(llm, request)
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name in ("get_weather", "get_time")
    assert isinstance(json.loads("".join(c.arguments for c in calls)), dict)
    assert not text_of(chunks)


async def test_llama_http_listener_is_local_and_keyed(llm: LlamaCppLLM) -> None:
    """Every instance's xllamacpp HTTP listener is on 127.0.0.1 and refuses requests
    without the key."""
    import httpx

    for instance in llm._shared().instances:
        address = instance.server.listening_address
        assert address.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=address) as client:
            models = await client.get("/v1/models", headers={"Origin": "http://evil.example"})
            chat = await client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
        assert models.status_code == 401 and chat.status_code == 401
        assert models.headers.get("access-control-allow-origin") != "*"


async def test_deadline_turns_a_slow_start_into_backend_timeout(llm: LlamaCppLLM) -> None:
    """A first-chunk deadline shorter than the model can meet → BackendTimeout; the slot frees."""
    from rtgate.pipeline.base import BackendTimeout, Deadlines

    hurried = LlamaCppLLM(max_output_tokens=64, deadlines=Deadlines(first_chunk_s=0.001))
    with pytest.raises(BackendTimeout):
        await collect(hurried, ask("Tell me a long story."))
    started = time.monotonic()
    assert isinstance((await collect(llm, ask("Hi", max_output_tokens=4)))[-1], Finish)
    assert time.monotonic() - started < 3.0


async def test_prefill_leaves_the_prompt_cached(llm: LlamaCppLLM) -> None:
    """After ``prefill``, the same request evaluates (almost) nothing of its prompt again;
    a prefill while the server is busy is skipped rather than queued."""
    request = ask("Tell me one thing about the moon and one thing about the sea.", max_output_tokens=4,
                  conversation="item_moon")
    await llm.prefill(request)
    usage = next(c for c in await collect(llm, request) if isinstance(c, Usage))
    assert usage.cached_tokens >= usage.input_tokens - 2, usage

    shared = llm._shared()
    streams = [
        llm.stream(ask(f"Count from one to {n}.", max_output_tokens=32))
        for n in range(20, 20 + shared.lane.capacity)
    ]
    for stream in streams:
        await anext(stream)  # every run of the model's lane is taken now
    assert len(shared.lane.rules.running) == shared.lane.capacity
    began = time.perf_counter()
    await llm.prefill(ask("Something else entirely, please."))
    assert time.perf_counter() - began < 0.05  # returned at once: skipped
    for stream in streams:
        await stream.aclose()


async def test_a_conversation_stays_on_the_instance_that_cached_its_prompt(
    llm: LlamaCppLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several model instances, a conversation's prefill and its answer meet on the
    same one (``LLMRequest.conversation``), even when the first instance was busy at the
    prefill and is free again at the answer."""
    shared = llm._shared()
    if len(shared.instances) < 2:
        pytest.skip("one model instance on this machine")
    # The instance choice is under test, not the cores lane's reserve (which keeps
    # speculation off the last free run): lend that run for the test.
    monkeypatch.setattr(shared.lane.rules, "reserve", 0)
    busy = llm.stream(ask("Count from one to thirty.", max_output_tokens=24))
    await anext(busy)  # the first instance is busy now
    request = ask("Name one thing about the rain and one about snow.", max_output_tokens=4,
                  conversation="item_rain")
    await llm.prefill(request)  # on the idle instance
    await busy.aclose()
    usage = next(c for c in await collect(llm, request) if isinstance(c, Usage))
    assert usage.cached_tokens >= usage.input_tokens - 2, usage


async def test_other_conversations_calls_leave_a_conversations_prompt_cached(llm: LlamaCppLLM) -> None:
    """Every prompt shares the system prompt, so llama.cpp alone gave a new conversation
    the slot of another one that was between two calls, and cleared idle slots at every
    call: the other conversation's next call evaluated its whole prompt again."""
    first = ask("Tell me one thing about the moon and one thing about the sea.", max_output_tokens=4,
                conversation="item_first")
    await collect(llm, first)
    for n, topic in enumerate(["rivers", "mountains", "deserts", "forests", "islands"]):
        await collect(llm, ask(f"Name one fact about {topic}.", max_output_tokens=4, conversation=f"item_{n}"))
    reused = PROMPT_TOKENS.reused
    usage = next(c for c in await collect(llm, first) if isinstance(c, Usage))
    assert usage.cached_tokens >= usage.input_tokens - 2, usage
    assert PROMPT_TOKENS.reused - reused == usage.cached_tokens  # what /metrics exports


async def test_a_prefill_seeds_a_blank_slot_for_the_next_conversation() -> None:
    """The next new conversation with the same system prompt finds it cached. A model of
    its own (one instance, three slots): the module's is shared by the other tests."""
    llm = LlamaCppLLM(instances=1, n_parallel=3, max_output_tokens=4)
    shared = llm._shared()
    system = {"role": "system", "content": "You are the seed test's assistant. Answer in one short sentence."}
    first = LLMRequest(messages=[system, {"role": "user", "content": "Hi there."}], conversation="item_seed_a")
    await llm.prefill(first)
    holding = [s for s in shared.instances[0].slots if s.head == system["content"]]
    assert len(holding) == 2, holding  # the prefill's slot and the seeded one
    assert not any(s.busy for s in holding)  # free as soon as the prefill returned
    second = LLMRequest(messages=[system, {"role": "user", "content": "What is rain?"}], conversation="item_seed_b")
    usage = next(c for c in await collect(llm, second) if isinstance(c, Usage))
    assert usage.cached_tokens >= 15, usage  # the system prompt came from the seeded slot
    assert shared.homes["item_seed_b"] is not shared.homes["item_seed_a"]


def long_history(pairs: int) -> list[dict[str, str]]:
    history: list[dict[str, str]] = [SYSTEM]
    for i in range(pairs):
        history.append({"role": "user", "content": f"Question {i}: tell me one fact about the number {i * 7}."})
        history.append({"role": "assistant",
                        "content": f"Fact {i}: the number {i * 7} is one that people use for counting every day."})
    return history


async def test_a_call_that_goes_on_reads_its_recent_history_and_keeps_it_cached() -> None:
    """A conversation longer than its slot still gets answers (llama.cpp refuses a prompt
    past the slot's context), from its recent history; the next turn finds that history
    cached, and when the oldest messages are cut the rest is shifted, not evaluated again.
    A model of its own (two slots of 1,024 tokens, 512 of history: the defaults' slot)."""
    llm = LlamaCppLLM(instances=1, n_parallel=2, n_ctx=2048, history_tokens=512, max_output_tokens=8)
    question = {"role": "user", "content": "And what about zero?"}
    long = [*long_history(60), question]  # ≈ 1,900 tokens: more than the slot holds
    first = next(c for c in await collect(llm, LLMRequest(messages=long, conversation="item_call"))
                 if isinstance(c, Usage))
    assert 200 < first.input_tokens <= 1024 - 8, first

    # Grow the call one exchange at a time until the kept history's first message moves.
    pairs = 60
    kept = llm._messages(LLMRequest(messages=long))[1]
    while llm._messages(LLMRequest(messages=[*long_history(pairs + 1), question]))[1] == kept:
        pairs += 1
    before = [*long_history(pairs), question]
    after = [*long_history(pairs + 1), question]
    await collect(llm, LLMRequest(messages=before, conversation="item_call"))
    same = next(c for c in await collect(llm, LLMRequest(messages=before, conversation="item_call"))
                if isinstance(c, Usage))
    assert same.cached_tokens >= same.input_tokens - 2, same
    cut = next(c for c in await collect(llm, LLMRequest(messages=after, conversation="item_call"))
               if isinstance(c, Usage))
    assert cut.input_tokens - cut.cached_tokens < 100, cut  # shifted into place, not evaluated


class _NoWaitPacer:
    """A client whose audio always runs low: every segment is due now."""

    def due(self) -> float:
        return time.monotonic()

    async def wait_ready(self) -> None:
        return None

    def on_wait(self, listener: object) -> None:
        return None


async def test_a_long_answer_ends_before_it_fills_its_slot() -> None:
    """A spoken answer in segments continues the answer so far in the prompt, and llama.cpp
    refuses a prompt past the slot: the answer ends (``stop``) at the slot's end instead
    of failing there. Slots of 256 tokens, a 400-token answer asked for."""
    llm = LlamaCppLLM(instances=1, n_parallel=2, n_ctx=512, history_tokens=100, max_output_tokens=400,
                      temperature=0.0)
    story = "Tell me a very long story about a dragon, in great detail, with many chapters."
    request = LLMRequest(messages=[SYSTEM, {"role": "user", "content": story}], pacer=_NoWaitPacer())
    chunks = await collect(llm, request)
    usage = next(c for c in chunks if isinstance(c, Usage))
    assert chunks[-1] == Finish("stop")
    assert 100 < usage.input_tokens + usage.output_tokens <= 256, usage
    # The client's own larger limit was not what ended it: still stop, not length.
    chunks = await collect(llm, replace(request, max_output_tokens=400))
    assert chunks[-1] == Finish("stop")


async def test_history_tokens_must_leave_room_for_the_answer() -> None:
    with pytest.raises(ValueError, match="history_tokens"):
        LlamaCppLLM(n_ctx=2048, n_parallel=8, history_tokens=200)  # slots of 256 tokens


async def test_brief_answer_ends_at_a_sentence_end_not_at_the_cap(llm: LlamaCppLLM) -> None:
    """With an answer limit, a rambling prompt ends at a sentence boundary with reason stop."""
    from rtgate.pipeline.answer import BRIEF

    engine = LlamaCppLLM(max_output_tokens=512)
    for _ in range(3):
        chunks = await collect(engine, ask("Tell me everything about the moon.", answer=BRIEF))
        text = text_of(chunks).rstrip()
        usage = next(c for c in chunks if isinstance(c, Usage))
        assert chunks[-1] == Finish("stop")
        assert usage.output_tokens <= 96 and usage.input_tokens > 0
        assert text[-1] in ".!?,;:\"')" or len(text.split()) < 12, text


async def test_length_finish_only_for_the_clients_limit(llm: LlamaCppLLM) -> None:
    """max_output_tokens from the client ends with length; the engine's own cap with stop."""
    chunks = await collect(llm, ask("Tell me a long story about a dragon.", max_output_tokens=5))
    assert chunks[-1] == Finish("length")
    capped = LlamaCppLLM(max_output_tokens=5)
    chunks = await collect(capped, ask("Tell me a long story about a dragon."))
    assert chunks[-1] == Finish("stop")

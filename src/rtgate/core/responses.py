"""One response's lifecycle and its output events (docs/protocol.md, Responses and Event sequences).

Lifecycle table (anything else is ignored: late backend chunks after a cancel are
dropped, never an error):

============  ===================  ============  =================================
state         input                next          emits
============  ===================  ============  =================================
in_progress   text / audio chunk   in_progress   item + part opened lazily, deltas
in_progress   tool-call chunk      in_progress   function_call item, argument deltas; for a
                                                 tool of an MCP server: mcp_call item and
                                                 mcp_call_arguments deltas, or (approval
                                                 required) an mcp_approval_request item
in_progress   model done, MCP      in_progress   mcp_call_arguments.done, mcp_call.in_progress;
              calls made                         the calls run (effect CallMcpTools)
in_progress   MCP result           in_progress   mcp_call.completed / .failed, item done; the
                                                 last result continues the model (StartResponse)
in_progress   finish               completed     all open parts/items done, response.done
in_progress   finish (length)      incomplete    … status_details max_output_tokens
in_progress   fail                 failed        … status_details.error
in_progress   cancel               cancelled     … reason client_cancelled / turn_detected
============  ===================  ============  =================================

Assistant items are added to the conversation as they open (unless the response is
out-of-band), so ``conversation.item.added`` follows ``response.output_item.added``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..audio import duration_ms
from ..protocol.items import item_wire_without_audio
from .conversation import Conversation, StoredItem
from .effects import ContextItem, ResponsePlan
from .ids import IdFactory

Emit = Callable[..., None]
Play = Callable[[str, str, int, bytes], None]

CANCELLED_CALL = {"type": "tool_execution_error",
                  "message": "The call was cancelled: its response ended before the tool answered."}


@dataclass(slots=True)
class OutputItem:
    stored: StoredItem
    output_index: int
    kind: str  # "message" | "function_call" | "mcp_call" | "mcp_approval_request"
    part_kind: str | None = None  # "text" | "audio" once the content part is open
    part_done: bool = False
    text: str = ""
    arguments: str = ""
    audio_ms: float = 0.0
    audio_bytes: int = 0

    @property
    def id(self) -> str:
        return self.stored.id


@dataclass(slots=True)
class ActiveResponse:
    id: str
    plan: ResponsePlan
    conversation_id: str | None
    status: str = "in_progress"
    output: list[OutputItem] = field(default_factory=list)
    message: OutputItem | None = None
    calls: dict[int, OutputItem] = field(default_factory=dict)
    pending: dict[str, OutputItem] = field(default_factory=dict)
    """MCP calls running, by item id."""
    base_items: list[ContextItem] = field(default_factory=list)
    """The context the response started from; MCP rounds add its own output to it."""
    tool_rounds: int = 0
    produced_audio: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class ResponseEmitter:
    """Turns backend output for one response into server events, via ``emit``."""

    def __init__(
        self,
        response: ActiveResponse,
        conversation: Conversation,
        ids: IdFactory,
        emit: Emit,
        play: Play | None = None,
    ) -> None:
        self.r = response
        self._conversation = conversation
        self._ids = ids
        self._emit = emit
        self._play = play
        """Where audio goes when the server plays it (a call): ``play(response_id, item_id,
        content_index, audio)`` in place of ``response.output_audio.delta``."""

    @property
    def active(self) -> bool:
        return self.r.status == "in_progress"

    # ------------------------------------------------------------------ wire shapes

    def response_wire(self) -> dict[str, Any]:
        plan = self.r.plan
        usage = None
        if self.r.status != "in_progress":
            usage = self._usage()
        return {
            "object": "realtime.response",
            "id": self.r.id,
            "status": self.r.status,
            "status_details": None,
            "output": [item_wire_without_audio(o.stored.wire) for o in self.r.output]
            if self.r.status != "in_progress"
            else [],
            "conversation_id": self.r.conversation_id,
            "output_modalities": plan.output_modalities,
            "max_output_tokens": plan.max_output_tokens or "inf",
            "audio": {"output": {"format": plan.output_format, "voice": plan.voice}},
            "usage": usage,
            "metadata": plan.metadata,
        }

    def _usage(self) -> dict[str, Any]:
        audio_out = sum(int(o.audio_ms / 50) for o in self.r.output)  # ~20 audio tokens/s
        text_out = self.r.output_tokens
        return {
            "total_tokens": self.r.input_tokens + text_out + audio_out,
            "input_tokens": self.r.input_tokens,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": self.r.input_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": self.r.cached_tokens,
                "cached_tokens_details": {
                    "text_tokens": self.r.cached_tokens,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _common(self, item: OutputItem) -> dict[str, Any]:
        return {"response_id": self.r.id, "item_id": item.id, "output_index": item.output_index}

    # ------------------------------------------------------------------ opening

    def _open_item(self, wire: dict[str, Any], kind: str) -> OutputItem:
        stored = StoredItem(wire=wire, audio_format=self.r.plan.output_format["type"])
        item = OutputItem(stored=stored, output_index=len(self.r.output), kind=kind)
        self.r.output.append(item)
        shown = item_wire_without_audio(wire)
        self._emit(
            "response.output_item.added",
            response_id=self.r.id,
            output_index=item.output_index,
            item=shown,
        )
        if self.r.plan.conversation:
            previous = self._conversation.insert(stored)
            self._emit("conversation.item.added", previous_item_id=previous, item=shown)
        return item

    def _message(self, part_kind: str) -> OutputItem:
        item = self.r.message
        if item is None:
            wire = {
                "id": self._ids.item(),
                "object": "realtime.item",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            item = self._open_item(wire, "message")
            self.r.message = item
        if item.part_kind is None:
            item.part_kind = part_kind
            part: dict[str, Any] = (
                {"type": "audio", "transcript": ""} if part_kind == "audio" else {"type": "text", "text": ""}
            )
            self._emit("response.content_part.added", **self._common(item), content_index=0, part=part)
        return item

    # ------------------------------------------------------------------ content

    def text(self, delta: str) -> None:
        """Text for a text-modality response."""
        if not delta:
            return
        item = self._message("text")
        item.text += delta
        self._emit("response.output_text.delta", **self._common(item), content_index=0, delta=delta)

    def audio(self, audio: bytes, transcript: str) -> None:
        """Audio (wire format) and the transcript of exactly that audio."""
        item = self._message("audio")
        if transcript:
            item.text += transcript
            self._emit(
                "response.output_audio_transcript.delta",
                **self._common(item),
                content_index=0,
                delta=transcript,
            )
        if audio:
            self.r.produced_audio = True
            item.audio_bytes += len(audio)
            item.audio_ms += duration_ms(len(audio), self.r.plan.output_format["type"])
            self._conversation.add_audio(item.stored, 0, audio)
            item.stored.alignment.setdefault(0, []).append((item.audio_ms, len(item.text)))
            if self._play is not None:
                self._play(self.r.id, item.id, 0, audio)
                return
            self._emit(
                "response.output_audio.delta",
                **self._common(item),
                content_index=0,
                delta=base64.b64encode(audio).decode("ascii"),
            )

    def _mcp_tool(self, name: str | None) -> dict[str, Any] | None:
        if not name or any(t.get("name") == name for t in self.r.plan.tools if t.get("type") == "function"):
            return None
        return next((t for t in self.r.plan.mcp_tools if t["name"] == name), None)

    def _open_mcp(self, spec: dict[str, Any], *, approval: bool) -> OutputItem:
        kind = "mcp_approval_request" if approval else "mcp_call"
        wire = {"id": self._ids.item(), "type": kind, "server_label": spec["server_label"],
                "name": spec["name"], "arguments": ""}
        return self._open_item(wire, kind)

    def tool_call(self, index: int, name: str | None, call_id: str | None, arguments: str) -> None:
        item = self.r.calls.get(index)
        if item is None and (spec := self._mcp_tool(name)) is not None:
            self._close_message("completed")
            item = self._open_mcp(spec, approval=spec["approval"])
            self.r.calls[index] = item
        if item is not None and item.kind.startswith("mcp_"):
            item.arguments += arguments
            if arguments and item.kind == "mcp_call":
                self._emit("response.mcp_call_arguments.delta", **self._common(item), delta=arguments)
            return
        if item is None:
            self._close_message("completed")
            wire = {
                "id": self._ids.item(),
                "object": "realtime.item",
                "type": "function_call",
                "status": "in_progress",
                "name": name or "",
                "call_id": call_id or self._ids.call(),
                "arguments": "",
            }
            item = self._open_item(wire, "function_call")
            self.r.calls[index] = item
        elif name and not item.stored.wire["name"]:
            item.stored.wire["name"] = name
        if arguments:
            item.arguments += arguments
            self._emit(
                "response.function_call_arguments.delta",
                **self._common(item),
                call_id=item.stored.wire["call_id"],
                delta=arguments,
            )

    def start_mcp_calls(self) -> list[OutputItem]:
        """The model is done and called MCP tools: close its message and calls, start the
        MCP calls (``mcp_call_arguments.done``, ``mcp_call.in_progress``) and return them;
        an empty list when it called none."""
        if not any(item.kind == "mcp_call" for item in self.r.calls.values()):
            return []
        self._close_message("completed")
        started = []
        for item in sorted(self.r.calls.values(), key=lambda o: o.output_index):
            if item.kind == "mcp_call":
                self._run_mcp(item)
                started.append(item)
            else:
                self._close_call(item, "completed")
        self.r.calls.clear()
        return started

    def run_approved(self, request: dict[str, Any]) -> OutputItem:
        """Open and start the ``mcp_call`` an approved ``mcp_approval_request`` asked for."""
        spec = {"server_label": request["server_label"], "name": request["name"]}
        item = self._open_mcp(spec, approval=False)
        item.stored.wire["approval_request_id"] = request["id"]
        item.arguments = str(request.get("arguments") or "")
        self._emit("response.mcp_call_arguments.delta", **self._common(item), delta=item.arguments)
        self._run_mcp(item)
        return item

    def _run_mcp(self, item: OutputItem) -> None:
        item.stored.wire["arguments"] = item.arguments
        self._emit("response.mcp_call_arguments.done", **self._common(item), arguments=item.arguments)
        self._emit("response.mcp_call.in_progress", item_id=item.id, output_index=item.output_index)
        self.r.pending[item.id] = item

    def mcp_result(self, item_id: str, output: str | None, error: dict[str, Any] | None) -> None:
        """A running MCP call ended: ``output``, or ``error`` (the protocol's error object)."""
        item = self.r.pending.pop(item_id, None)
        if item is None:
            return
        wire = item.stored.wire
        if error is None:
            wire["output"] = output or ""
            self._emit("response.mcp_call.completed", item_id=item.id, output_index=item.output_index)
        else:
            wire["error"] = error
            self._emit("response.mcp_call.failed", item_id=item.id, output_index=item.output_index)
        self._finish_item(item)

    def context_so_far(self) -> list[ContextItem]:
        """What the model continues from after MCP calls: the start, then this response's output."""
        return [*self.r.base_items, *(ContextItem(wire=o.stored.wire) for o in self.r.output)]

    def usage(self, input_tokens: int, output_tokens: int, cached_tokens: int) -> None:
        self.r.input_tokens += input_tokens
        self.r.output_tokens += output_tokens
        self.r.cached_tokens += cached_tokens

    # ------------------------------------------------------------------ closing

    def _close_message(self, status: str) -> None:
        item = self.r.message
        if item is None:
            return
        self.r.message = None
        wire = item.stored.wire
        if item.part_kind == "text":
            self._emit("response.output_text.done", **self._common(item), content_index=0, text=item.text)
            part = {"type": "text", "text": item.text}
            wire["content"] = [{"type": "output_text", "text": item.text}]
        elif item.part_kind == "audio":
            self._emit("response.output_audio.done", **self._common(item), content_index=0)
            self._emit(
                "response.output_audio_transcript.done",
                **self._common(item),
                content_index=0,
                transcript=item.text,
            )
            part = {"type": "audio", "transcript": item.text}
            wire["content"] = [{"type": "output_audio", "transcript": item.text}]
        if item.part_kind is not None:
            self._emit("response.content_part.done", **self._common(item), content_index=0, part=part)
        wire["status"] = status
        self._finish_item(item)

    def _close_call(self, item: OutputItem, status: str) -> None:
        wire = item.stored.wire
        if item.kind == "mcp_approval_request":
            wire["arguments"] = item.arguments
            self._finish_item(item)
            return
        if item.kind == "mcp_call":  # the response ended before the call could run
            self._run_mcp(item)
            self.mcp_result(item.id, None, CANCELLED_CALL)
            return
        wire["arguments"] = item.arguments
        wire["status"] = status
        self._emit(
            "response.function_call_arguments.done",
            **self._common(item),
            call_id=wire["call_id"],
            name=wire["name"],
            arguments=item.arguments,
        )
        self._finish_item(item)

    def _finish_item(self, item: OutputItem) -> None:
        shown = item_wire_without_audio(item.stored.wire)
        if self.r.plan.conversation and item.id in self._conversation:
            self._emit(
                "conversation.item.done",
                previous_item_id=self._conversation.previous_id(item.id),
                item=shown,
            )
        self._emit(
            "response.output_item.done",
            response_id=self.r.id,
            output_index=item.output_index,
            item=shown,
        )

    def finish(
        self,
        status: str,
        details: dict[str, Any] | None = None,
        *,
        rate_limits: list[dict[str, Any]] | None = None,
    ) -> None:
        """End the response with ``status`` and emit ``response.done`` (+ rate limits)."""
        if not self.active:
            return
        item_status = "completed" if status == "completed" else "incomplete"
        self._close_message(item_status)
        for item in sorted(self.r.calls.values(), key=lambda o: o.output_index):
            if item_status == "completed":
                try:
                    json.loads(item.arguments or "{}")
                except ValueError:
                    item_status = "incomplete"
            self._close_call(item, item_status)
        self.r.calls.clear()
        for item_id in list(self.r.pending):
            self.mcp_result(item_id, None, CANCELLED_CALL)
        self.r.status = status
        wire = self.response_wire()
        wire["status_details"] = details
        self._emit("response.done", response=wire)
        if rate_limits is not None:
            self._emit("rate_limits.updated", rate_limits=rate_limits)

"""Conversation items and content parts a client may create (docs/protocol.md, Conversation items).

Validated strictly at the edge; the core stores items as :class:`StoredItem`, which keeps
the wire form (without audio bytes) and the audio bytes apart, because audio is only
returned by ``conversation.item.retrieve``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .session import AudioFormat as AudioFormat
from .session import MaxTokens, Prompt, Reasoning, Tool, ToolChoice


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


ItemStatus = Literal["completed", "incomplete", "in_progress"]


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class InputAudio(_Strict):
    type: Literal["input_audio"]
    audio: str | None = None
    transcript: str | None = None


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputText(_Strict):
    type: Literal["output_text"]
    text: str | None = None


class OutputAudio(_Strict):
    type: Literal["output_audio"]
    audio: str | None = None
    transcript: str | None = None


ContentPart = Annotated[
    InputText | InputAudio | InputImage | OutputText | OutputAudio, Field(discriminator="type")
]

ALLOWED_CONTENT: dict[str, tuple[str, ...]] = {
    "system": ("input_text",),
    "user": ("input_text", "input_audio", "input_image"),
    "assistant": ("output_text",),
}


class MessageItem(_Strict):
    type: Literal["message"]
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart]
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    name: str
    arguments: str
    call_id: str | None = None
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str
    output: str
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class McpApprovalResponseItem(_Strict):
    """The client's answer to an ``mcp_approval_request`` item."""

    type: Literal["mcp_approval_response"]
    approval_request_id: str
    approve: bool
    reason: str | None = None
    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


ConversationItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | McpApprovalResponseItem,
    Field(discriminator="type"),
]


class ItemReference(_Strict):
    type: Literal["item_reference"]
    id: str


ResponseInputItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | ItemReference,
    Field(discriminator="type"),
]


class ResponseAudioOutput(_Strict):
    format: AudioFormat | None = None
    voice: str | None = None


class ResponseAudio(_Strict):
    output: ResponseAudioOutput | None = None


class ResponseCreateParams(_Strict):
    """``response.create.response``: per-response overrides (docs/protocol.md, Responses)."""

    conversation: Literal["auto", "none"] | str | None = None
    input: list[ResponseInputItem] | None = None
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    audio: ResponseAudio | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: MaxTokens | None = None
    metadata: dict[str, str] | None = None
    prompt: Prompt | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None


def item_wire_without_audio(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of a wire item with audio bytes removed from its content parts."""
    content = item.get("content")
    if not content:
        return dict(item)
    parts = []
    for part in content:
        if "audio" in part:
            part = {k: v for k, v in part.items() if k != "audio"}
        parts.append(part)
    return {**item, "content": parts}

"""Effects the session core asks its transport to run.

The core never does I/O; it returns these next to the server events it emits, and the
transport runs them (start a backend stream, cancel it, transcribe audio, close).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ContextItem:
    """One conversation item handed to the pipeline, with its audio (if any) as PCM16."""

    wire: dict[str, Any]
    audio: bytes | None = None
    audio_format: str = "audio/pcm"


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """Everything a backend needs to generate one response."""

    response_id: str
    instructions: str
    items: list[ContextItem]
    output_modalities: list[str]
    voice: str
    speed: float
    output_format: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_choice: Any
    max_output_tokens: int | None
    conversation: bool
    metadata: dict[str, str] | None = None
    mcp_tools: list[dict[str, Any]] = field(default_factory=list)
    """Tools of the session's MCP servers the model may call: ``{server_label, name,
    description, input_schema, approval}`` each (core/mcp.py)."""
    reasoning_effort: str | None = None
    """``reasoning.effort`` of the session or response, for backends that take one."""


@dataclass(frozen=True, slots=True)
class StartResponse:
    plan: ResponsePlan


@dataclass(frozen=True, slots=True)
class CancelResponse:
    response_id: str


@dataclass(frozen=True, slots=True)
class StartTranscription:
    item_id: str
    audio: bytes
    audio_format: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ClearOutputAudio:
    """A call (the server plays the audio): drop all queued output audio now (a cut-off
    decided by the core, core/playback.py); ``response_id`` is the response cut."""

    response_id: str


@dataclass(frozen=True, slots=True)
class PlayAudio:
    """A call: queue ``pcm`` (PCM16 mono at ``sample_rate``) of one assistant audio part
    for playback, reporting progress with :meth:`Session.on_playback_started`,
    :meth:`Session.on_audio_played` and :meth:`Session.on_playback_stopped`. Sent in place
    of ``response.output_audio.delta``, which a call does not carry."""

    response_id: str
    item_id: str
    content_index: int
    pcm: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class FinishPlayback:
    """A call: no more audio comes for ``response_id``; report
    :meth:`Session.on_playback_stopped` once what is queued of it has played."""

    response_id: str


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    """Turn detection heard the user start speaking: the utterance that will be committed
    as ``item_id`` starts at ``audio_start_ms`` of the input buffer (for transcription
    while the user speaks, transport/incremental_stt.py)."""

    item_id: str
    audio_start_ms: float


@dataclass(frozen=True, slots=True)
class UtteranceStopped:
    """The utterance ``item_id`` ended; its speech ended at ``speech_end_ms`` (the last
    frame heard as speech, before the silence window). It is committed next."""

    item_id: str
    speech_end_ms: float


@dataclass(frozen=True, slots=True)
class PredictTurnEnd:
    """Run the turn-end model on ``audio`` (the turn so far, in ``audio_format``) and
    report the probability that it is complete with :meth:`Session.on_turn_end`."""

    query_id: int
    audio: bytes
    audio_format: str


@dataclass(frozen=True, slots=True)
class ListMcpTools:
    """List the tools of the MCP server ``tool`` (a session's ``{"type": "mcp"}`` tool) and
    report with :meth:`Session.on_mcp_tools_listed` or :meth:`Session.on_mcp_list_failed`."""

    item_id: str
    tool: dict[str, Any]


@dataclass(frozen=True, slots=True)
class McpCall:
    item_id: str
    tool: dict[str, Any]
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class CallMcpTools:
    """Run ``calls`` for response ``response_id``, one after the other, reporting each with
    :meth:`Session.on_mcp_call_result`; cancelled with the response
    (:class:`CancelResponse`)."""

    response_id: str
    calls: tuple[McpCall, ...]


Effect = (StartResponse | CancelResponse | StartTranscription | Close | ClearOutputAudio | PredictTurnEnd
          | ListMcpTools | CallMcpTools | PlayAudio | FinishPlayback | UtteranceStarted | UtteranceStopped)

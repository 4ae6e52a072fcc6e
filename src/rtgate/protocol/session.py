"""GA session objects (docs/protocol.md, Session objects): typed models, server defaults, and update rules.

The models are strict (no type coercion) and forbid unknown fields, so validating a
client's ``session`` object yields exactly the errors the cloud sends
(:func:`rtgate.protocol.errors.from_validation_error`). :func:`apply_update` implements
``session.update``: deep merge of partial objects, a partial ``turn_detection`` keeps its
``type``, ``null`` clears, and any invalid field rejects the whole update.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import (
    RealtimeError,
    echo,
    from_validation_error,
    invalid_value,
    missing_parameter,
)

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty, and friendly AI. Act like a human, but remember that you "
    "aren't a human and that you can't do human things in the real world. Keep answers short."
)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- audio formats


class PcmFormat(_Strict):
    type: Literal["audio/pcm"]
    rate: Annotated[int, Field(ge=24000, le=24000)] = 24000


class PcmuFormat(_Strict):
    type: Literal["audio/pcmu"]


class PcmaFormat(_Strict):
    type: Literal["audio/pcma"]


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]


# --------------------------------------------------------------------------- input audio


class Transcription(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    languages: list[str] | None = None
    keywords: list[str] | None = None
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"]
    strength: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    prefix_padding_ms: Annotated[int, Field(ge=0, le=10_000)] = 300
    silence_duration_ms: Annotated[int, Field(ge=0, le=10_000)] = 200
    idle_timeout_ms: Annotated[int, Field(ge=5_000, le=30_000)] | None = None
    create_response: bool = True
    interrupt_response: bool = True


class SemanticVad(_Strict):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioInput(_Strict):
    format: AudioFormat = Field(default_factory=lambda: PcmFormat(type="audio/pcm"))
    transcription: Transcription | None = None
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = Field(
        default_factory=lambda: ServerVad(type="server_vad")
    )


class VoiceId(_Strict):
    id: str


class AudioOutput(_Strict):
    format: AudioFormat = Field(default_factory=lambda: PcmFormat(type="audio/pcm"))
    voice: str | VoiceId = "alloy"
    speed: Annotated[float, Field(ge=0.25, le=1.5)] = 1.0


class RealtimeAudio(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


class TranscriptionAudio(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)


# --------------------------------------------------------------------------- tools


class FunctionTool(_Strict):
    type: Literal["function"] = "function"
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class McpToolFilter(_Strict):
    """Tools by name and/or by the server's ``readOnlyHint`` annotation."""

    tool_names: list[str] | None = None
    read_only: bool | None = None


class McpApprovalFilter(_Strict):
    always: McpToolFilter | None = None
    never: McpToolFilter | None = None


class McpTool(_Strict):
    """A remote MCP server's tools (rtgate/mcp/: listed at session.update, called by rtgate)."""

    type: Literal["mcp"]
    server_label: Annotated[str, Field(min_length=1)]
    server_url: str | None = None
    connector_id: str | None = None
    tunnel_id: str | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    allowed_tools: list[str] | McpToolFilter | None = None
    require_approval: Literal["always", "never"] | McpApprovalFilter | None = None
    server_description: str | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    defer_loading: bool | None = None


Tool = Annotated[FunctionTool | McpTool, Field(discriminator="type")]


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str


class ToolChoiceMcp(_Strict):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


ToolChoice = (
    Literal["auto", "none", "required"]
    | Annotated[ToolChoiceFunction | ToolChoiceMcp, Field(discriminator="type")]
)


class TracingConfig(_Strict):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] | None = None


class TokenLimits(_Strict):
    post_instructions: int | None = None


class RetentionRatio(_Strict):
    type: Literal["retention_ratio"]
    retention_ratio: Annotated[float, Field(ge=0.0, le=1.0)]
    token_limits: TokenLimits | None = None


class Prompt(_Strict):
    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


class Reasoning(_Strict):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


MaxTokens = Annotated[int, Field(ge=1, le=4096)] | Literal["inf"]
Include = list[Literal["item.input_audio_transcription.logprobs"]]


# --------------------------------------------------------------------------- sessions


def _audio_only() -> list[Literal["text", "audio"]]:
    return ["audio"]


class RealtimeSessionConfig(_Strict):
    """A GA realtime session (``type: "realtime"``) with the server's defaults."""

    type: Literal["realtime"]
    model: str | None = None
    output_modalities: list[Literal["text", "audio"]] = Field(default_factory=_audio_only)
    instructions: str = DEFAULT_INSTRUCTIONS
    audio: RealtimeAudio = Field(default_factory=RealtimeAudio)
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: MaxTokens = "inf"
    tracing: Literal["auto"] | TracingConfig | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatio = "auto"
    prompt: Prompt | None = None
    include: Include | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None


class TranscriptionSessionConfig(_Strict):
    """A GA transcription session (``type: "transcription"``)."""

    type: Literal["transcription"]
    audio: TranscriptionAudio = Field(default_factory=TranscriptionAudio)
    include: Include | None = None


SessionConfig = RealtimeSessionConfig | TranscriptionSessionConfig

# Output-only fields a client may echo back from session.created; ignored on update.
_READ_ONLY = ("id", "object", "expires_at", "client_secret")
# Objects replaced whole rather than merged: discriminated by ``type`` or opaque.
_REPLACED = {"format", "tools", "tool_choice", "prompt", "tracing", "truncation", "include",
             "output_modalities", "voice", "metadata", "parameters", "languages", "keywords"}


def default_config(kind: Literal["realtime", "transcription"], model: str | None) -> SessionConfig:
    if kind == "transcription":
        return TranscriptionSessionConfig(type="transcription")
    return RealtimeSessionConfig(type="realtime", model=model)


def session_wire(config: SessionConfig, *, session_id: str, expires_at: int) -> dict[str, Any]:
    """The full effective session as sent in ``session.created`` / ``session.updated``."""
    body = config.model_dump(mode="json", exclude_none=False)
    head: dict[str, Any]
    if isinstance(config, TranscriptionSessionConfig):
        head = {"type": "transcription", "object": "realtime.transcription_session"}
    else:
        head = {"type": "realtime", "object": "realtime.session"}
        for optional in ("reasoning", "parallel_tool_calls"):
            if body.get(optional) is None:
                body.pop(optional, None)
    head.update(id=session_id, expires_at=expires_at)
    body.pop("type")
    wire = {**head, **body}
    _strip_unset_transcription(wire)
    return wire


def _strip_unset_transcription(wire: dict[str, Any]) -> None:
    # The cloud echoes transcription as {model, language, prompt}, plus the newer
    # fields only when set.
    transcription = wire.get("audio", {}).get("input", {}).get("transcription")
    if isinstance(transcription, dict):
        for key in ("languages", "keywords", "delay"):
            if transcription.get(key) is None:
                transcription.pop(key, None)
    nr = wire.get("audio", {}).get("input", {}).get("noise_reduction")
    if isinstance(nr, dict) and nr.get("strength") is None:
        nr["strength"] = 1.0


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        if (
            key not in _REPLACED
            and isinstance(value, dict)
            and isinstance(current, dict)
            and not _type_changes(current, value)
        ):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _type_changes(current: dict[str, Any], patch: dict[str, Any]) -> bool:
    return "type" in patch and patch["type"] != current.get("type")


def _fill_turn_detection_type(patch: dict[str, Any], current: dict[str, Any]) -> None:
    """A partial ``turn_detection`` without ``type`` keeps the current type
    (docs/protocol.md, Session objects)."""
    td = patch.get("audio", {}).get("input", {}).get("turn_detection") if isinstance(
        patch.get("audio"), dict
    ) and isinstance(patch["audio"].get("input"), dict) else None
    if isinstance(td, dict) and "type" not in td:
        existing = current.get("audio", {}).get("input", {}).get("turn_detection")
        td["type"] = existing["type"] if isinstance(existing, dict) else "server_vad"


def validate_session(raw: Any, prefix: str = "session") -> SessionConfig:
    """Validate a complete session object (client secrets, initial configs)."""
    if not isinstance(raw, dict):
        raise RealtimeError(
            f"Invalid type for '{prefix}': expected an object.", "invalid_type", prefix
        )
    kind = raw.get("type")
    if kind is None:
        raise missing_parameter(f"{prefix}.type")
    body = {k: v for k, v in raw.items() if k not in _READ_ONLY}
    model_cls: type[SessionConfig]
    if kind == "realtime":
        model_cls = RealtimeSessionConfig
    elif kind == "transcription":
        model_cls = TranscriptionSessionConfig
    else:
        raise invalid_value(f"{prefix}.type", kind, "'realtime', 'transcription'")
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


def check_tool_choice(tool_choice: Any, tools: Any, param: str) -> None:
    """Raise when ``tool_choice`` demands a tool that ``tools`` does not offer: ``required``
    with no tools, or a function by name that is not among them (issue 17)."""
    choice = tool_choice.model_dump() if hasattr(tool_choice, "model_dump") else tool_choice
    names = {getattr(t, "name", None) for t in tools or ()}
    if choice == "required" and not tools:
        raise RealtimeError(
            "Invalid value: 'required'. tool_choice 'required' needs at least one tool in "
            "'tools'; add tools or use 'auto'.", "invalid_value", param)
    if isinstance(choice, dict) and choice.get("type") == "function" and (
        choice.get("name") not in names
    ):
        raise RealtimeError(
            f"Invalid value: '{echo(choice.get('name'))}'. tool_choice names a function that "
            "is not among 'tools'.", "invalid_value", param)
    labels = {getattr(t, "server_label", None) for t in tools or () if getattr(t, "type", "") == "mcp"}
    if isinstance(choice, dict) and choice.get("type") == "mcp" and (
        choice.get("server_label") not in labels
    ):
        raise RealtimeError(
            f"Invalid value: '{echo(choice.get('server_label'))}'. tool_choice names an MCP "
            "server_label that is not among 'tools'.", "invalid_value", param)


def apply_update(
    current: SessionConfig, patch: Any, *, voice_locked: bool = False
) -> SessionConfig:
    """Return the effective config after ``session.update`` with ``patch``.

    Raises :class:`RealtimeError` and leaves ``current`` untouched when any field is
    invalid: an update is applied whole or not at all.
    """
    if not isinstance(patch, dict):
        raise RealtimeError(
            "Invalid type for 'session': expected an object.", "invalid_type", "session"
        )
    if "type" not in patch:
        raise missing_parameter("session.type")
    if patch["type"] != current.type:
        if patch["type"] not in ("realtime", "transcription"):
            raise invalid_value("session.type", patch["type"], "'realtime', 'transcription'")
        raise RealtimeError(
            f"Invalid value: '{echo(patch['type'])}'. This is a {current.type} session; "
            "the session type cannot change after the session is created.",
            "invalid_value",
            "session.type",
        )
    patch = {k: copy.deepcopy(v) for k, v in patch.items() if k not in _READ_ONLY}
    current_raw = current.model_dump(mode="json", exclude_none=False)
    _fill_turn_detection_type(patch, current_raw)
    merged = _deep_merge(current_raw, patch)
    new = validate_session(merged)
    if isinstance(new, RealtimeSessionConfig) and isinstance(current, RealtimeSessionConfig):
        if new.model != current.model and "model" in patch:
            raise RealtimeError(
                f"Invalid value: '{echo(new.model)}'. The model of a session cannot be changed "
                f"after it is created (it is '{current.model}').",
                "invalid_value",
                "session.model",
            )
        if {"tool_choice", "tools"} & set(patch):
            check_tool_choice(new.tool_choice, new.tools, "session.tool_choice")
        if voice_locked and new.audio.output.voice != current.audio.output.voice:
            raise RealtimeError(
                "Cannot update a conversation's voice if assistant audio is present.",
                "cannot_update_voice",
                "session.audio.output.voice",
            )
    return new

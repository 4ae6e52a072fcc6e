"""Preview (beta) ↔ GA object shapes: sessions, items, responses, tools (docs/protocol.md, Preview dialect).

Pure functions over plain JSON dicts; the event layer is :mod:`rtgate.protocol.preview`.
Field renames come from :mod:`rtgate.protocol.dialects`, the tables the migration checker
also reads. Rules:

* Preview → GA builds exactly the GA shape: a Preview field with no GA equivalent is left
  out and its path appended to ``dropped`` (the caller turns that into a one-time notice).
  Fields this module does not know pass through unchanged, so the GA side answers them
  with its own ``unknown_parameter`` error instead of the bridge hiding a typo.
* GA → Preview builds the flat Preview shape and leaves out GA-only fields (``truncation``,
  ``prompt``, ``reasoning``, MCP tools and items) that a Preview client cannot read.
* Output-only session fields (``id``, ``object``, ``expires_at``, ``client_secret``) that a
  Preview client echoes back in ``session.update`` carry no behaviour and are left out.
"""

from __future__ import annotations

import copy
from typing import Any

from rtgate.protocol.dialects import (
    GA_AUDIO_FORMAT_TO_PREVIEW,
    PREVIEW_AUDIO_FORMATS,
    PREVIEW_CONTENT_TYPES,
    PREVIEW_SESSION_FIELDS,
)

JSON = dict[str, Any]

GA_CONTENT_TYPES_TO_PREVIEW: dict[str, str] = {ga: p for p, ga in PREVIEW_CONTENT_TYPES.items()}

# Turn-detection fields per GA variant (docs/protocol.md, Session objects). Preview had one flat object.
SERVER_VAD_FIELDS = frozenset(
    {
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    }
)
SEMANTIC_VAD_FIELDS = frozenset({"eagerness", "create_response", "interrupt_response"})
_VAD_FIELDS = SERVER_VAD_FIELDS | SEMANTIC_VAD_FIELDS

# Session fields that only the server fills in; echoing them back changes nothing.
_OUTPUT_ONLY_SESSION_FIELDS = frozenset({"id", "object", "expires_at", "client_secret"})
# GA transcription sessions accept only these top-level fields besides ``type``
# (docs/protocol.md, Session objects).
_TRANSCRIPTION_TARGETS = ("audio.input.", "include")
_TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})
# Same name and place in both dialects.
_SHARED_SESSION_FIELDS = (
    "id",
    "object",
    "expires_at",
    "model",
    "instructions",
    "tools",
    "tool_choice",
    "tracing",
    "include",
)
_SHARED_RESPONSE_FIELDS = (
    "id",
    "object",
    "status",
    "status_details",
    "output",
    "conversation_id",
    "max_output_tokens",
    "metadata",
    "usage",
)

PREVIEW_TRANSCRIPTION_OBJECT = "realtime.transcription_session"


class PreviewTranslationError(ValueError):
    """A Preview value that has no GA form; the transport answers it with an ``error``.

    ``code`` and ``param`` follow the OpenAI error shape (docs/protocol.md, Errors).
    """

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# --- small value mappings ----------------------------------------------------------------


def modalities_to_ga(value: Any) -> Any:
    """Preview ``modalities`` → GA ``output_modalities``.

    Preview's ``["text","audio"]`` (audio with its transcript) is GA's ``["audio"]``; GA
    never takes both. Anything without ``"audio"`` is text only.
    """
    if not isinstance(value, list):
        return value
    return ["audio"] if "audio" in value else ["text"]


def modalities_to_preview(value: Any) -> Any:
    """GA ``output_modalities`` → Preview ``modalities`` (``["audio"]`` → ``["audio","text"]``)."""
    if not isinstance(value, list):
        return value
    return ["audio", "text"] if "audio" in value else ["text"]


def audio_format_to_ga(value: Any, *, param: str) -> Any:
    """Preview format string (``pcm16``/``g711_ulaw``/``g711_alaw``) → GA format object."""
    if value is None or isinstance(value, dict):
        return value
    fmt = PREVIEW_AUDIO_FORMATS.get(value) if isinstance(value, str) else None
    if fmt is None:
        allowed = ", ".join(repr(k) for k in PREVIEW_AUDIO_FORMATS)
        raise PreviewTranslationError(
            f"Invalid value {value!r} for '{param}'. Supported values are: {allowed}.",
            param=param,
        )
    return dict(fmt)


def audio_format_to_preview(value: Any) -> Any:
    """GA format object → Preview format string; an unknown type is passed on unchanged."""
    if isinstance(value, dict):
        return GA_AUDIO_FORMAT_TO_PREVIEW.get(str(value.get("type")), value)
    return value


def tool_choice_to_ga(value: Any) -> Any:
    """Preview ``tool_choice`` string; a bare function name becomes ``{type:"function",name}``."""
    if isinstance(value, str) and value not in _TOOL_CHOICE_MODES:
        return {"type": "function", "name": value}
    return value


def tool_choice_to_preview(value: Any) -> Any:
    """GA ``tool_choice`` → Preview string; ``None`` when it has no Preview form (MCP)."""
    if isinstance(value, dict):
        return value.get("name") if value.get("type") == "function" else None
    return value


def tools_to_ga(value: Any) -> Any:
    """Preview tools (``type`` optional, function only) → GA function tools."""
    if not isinstance(value, list):
        return value
    return [
        {"type": "function", **t} if isinstance(t, dict) and "type" not in t else t for t in value
    ]


def tools_to_preview(value: Any) -> Any:
    """GA tools → Preview; MCP tools have no Preview form and are left out."""
    if not isinstance(value, list):
        return value
    return [t for t in value if not (isinstance(t, dict) and t.get("type") == "mcp")]


def voice_to_preview(value: Any) -> Any:
    """GA voice → Preview string; a custom voice ``{"id": …}`` is reported by its id."""
    if isinstance(value, dict) and "id" in value:
        return value["id"]
    return value


def turn_detection_to_ga(value: Any, *, param: str, dropped: list[str]) -> Any:
    """Flat Preview ``turn_detection`` (``type`` optional) → GA ``ServerVad``/``SemanticVad``.

    A missing ``type`` means ``server_vad`` (the Preview default). VAD fields that the
    chosen variant does not take are left out and reported in ``dropped``.
    """
    if not isinstance(value, dict):
        return value
    kind = value.get("type") or "server_vad"
    # Client values are looked up only when they are strings: a list or object as ``type``
    # is the GA validator's to report (invalid_type), not a TypeError here (issue 17).
    allowed = (
        {"server_vad": SERVER_VAD_FIELDS, "semantic_vad": SEMANTIC_VAD_FIELDS}.get(kind)
        if isinstance(kind, str) else None
    )
    out: JSON = {"type": kind}
    for key, item in value.items():
        if key == "type":
            continue
        if allowed is not None and key in _VAD_FIELDS and key not in allowed:
            dropped.append(f"{param}.{key}")
            continue
        out[key] = item
    return out


# --- sessions ----------------------------------------------------------------------------


def _set_path(target: JSON, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def _get_path(source: JSON, dotted: str) -> tuple[bool, Any]:
    node: Any = source
    for name in dotted.split("."):
        if not isinstance(node, dict) or name not in node:
            return False, None
        node = node[name]
    return True, node


def _session_value_to_ga(key: str, value: Any, *, param: str, dropped: list[str]) -> Any:
    if key == "modalities":
        return modalities_to_ga(value)
    if key in ("input_audio_format", "output_audio_format"):
        return audio_format_to_ga(value, param=param)
    if key == "turn_detection":
        return turn_detection_to_ga(value, param=param, dropped=dropped)
    return copy.deepcopy(value)


def preview_session_to_ga(
    session: JSON, *, transcription: bool, dropped: list[str], param: str = "session"
) -> JSON:
    """Flat Preview session (``openai.types.beta.realtime.Session``) → nested GA session config with ``type``.

    ``transcription`` selects a GA ``type:"transcription"`` session (docs/protocol.md,
    Session objects), which has no output side: fields aimed elsewhere (``modalities``,
    ``voice``, …) are dropped. Paths of dropped fields are appended to ``dropped``.
    """
    out: JSON = {"type": "transcription" if transcription else "realtime"}
    for key, value in session.items():
        path = f"{param}.{key}"
        if key in _OUTPUT_ONLY_SESSION_FIELDS or key == "type":
            continue
        if key in PREVIEW_SESSION_FIELDS:
            target = PREVIEW_SESSION_FIELDS[key]
        elif key == "tool_choice":
            target, value = key, tool_choice_to_ga(value)
        elif key == "tools":
            target, value = key, tools_to_ga(value)
        else:
            target = key
        if target is None or (transcription and not target.startswith(_TRANSCRIPTION_TARGETS)):
            dropped.append(path)
            continue
        _set_path(out, target, _session_value_to_ga(key, value, param=path, dropped=dropped))
    return out


def ga_session_to_preview(session: JSON, *, client_model: str | None = None) -> JSON:
    """GA session (``session.created``/``updated``, REST) → flat Preview session.

    A ``type:"transcription"`` session becomes the Preview transcription session shape.
    ``client_model``, when given, is reported as ``model``: the name the Preview client
    connected with, which may differ from the GA model serving it. ``client_secret`` is
    ``null`` as on a Preview socket; the REST helper fills it in.
    """
    transcription = session.get("type") == "transcription"
    out: JSON = {}
    for key in _SHARED_SESSION_FIELDS:
        if key in session:
            out[key] = copy.deepcopy(session[key])
    for preview_key, ga_path in PREVIEW_SESSION_FIELDS.items():
        if ga_path is None:
            continue
        found, value = _get_path(session, ga_path)
        if not found:
            continue
        if preview_key in ("input_audio_format", "output_audio_format"):
            value = audio_format_to_preview(value)
        elif preview_key == "modalities":
            value = modalities_to_preview(value)
        elif preview_key == "voice":
            value = voice_to_preview(value)
        out[preview_key] = copy.deepcopy(value)
    if "tools" in out:
        out["tools"] = tools_to_preview(out["tools"])
    if "tool_choice" in out:
        choice = tool_choice_to_preview(out["tool_choice"])
        if choice is None:
            del out["tool_choice"]
        else:
            out["tool_choice"] = choice
    if transcription:
        out["object"] = PREVIEW_TRANSCRIPTION_OBJECT
        out.setdefault("modalities", ["text"])
    elif client_model is not None:
        out["model"] = client_model
    out["client_secret"] = None
    return out


# --- items -------------------------------------------------------------------------------


def preview_item_to_ga(item: JSON, *, param: str = "item") -> JSON:
    """Preview conversation item → GA item.

    Assistant content ``text``/``audio`` becomes ``output_text``/``output_audio``. A content
    part of type ``item_reference`` has no GA form inside an item and raises
    :class:`PreviewTranslationError` (references are items of their own in GA, allowed only
    in ``response.create`` input).
    """
    out = copy.deepcopy(item)
    content = out.get("content")
    if not isinstance(content, list):
        return out
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "item_reference":
            raise PreviewTranslationError(
                f"Content type 'item_reference' at '{param}.content[{index}].type' is not "
                "supported inside an item; reference earlier items with "
                "'response.create' input items of type 'item_reference' instead.",
                param=f"{param}.content[{index}].type",
            )
        if out.get("role") == "assistant" and isinstance(kind, str) and kind in PREVIEW_CONTENT_TYPES:
            part["type"] = PREVIEW_CONTENT_TYPES[kind]
    return out


def preview_input_item_to_ga(item: JSON, *, param: str) -> list[JSON]:
    """One Preview ``response.create`` input item → GA input items.

    ``{type:"item_reference", id}`` stays a reference. A message whose content consists
    only of ``item_reference`` parts (a Preview idiom) becomes one reference per part.
    """
    if item.get("type") == "item_reference":
        return [{"type": "item_reference", "id": item.get("id")}]
    content = item.get("content")
    if (
        isinstance(content, list)
        and content
        and all(isinstance(p, dict) and p.get("type") == "item_reference" for p in content)
    ):
        return [{"type": "item_reference", "id": p.get("id")} for p in content]
    return [preview_item_to_ga(item, param=param)]


def ga_item_to_preview(item: JSON) -> JSON | None:
    """GA item → Preview item; ``None`` for GA-only item types (MCP) a Preview client lacks."""
    kind = item.get("type")
    if isinstance(kind, str) and kind.startswith("mcp_"):
        return None
    out = copy.deepcopy(item)
    content = out.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("type"), str) and (
                part["type"] in GA_CONTENT_TYPES_TO_PREVIEW
            ):
                part["type"] = GA_CONTENT_TYPES_TO_PREVIEW[part["type"]]
    return out


def ga_items_to_preview(items: Any) -> Any:
    """A list of GA items → Preview items, leaving out GA-only item types."""
    if not isinstance(items, list):
        return items
    out = [ga_item_to_preview(i) if isinstance(i, dict) else i for i in items]
    return [i for i in out if i is not None]


# --- responses ---------------------------------------------------------------------------


def preview_response_params_to_ga(
    params: JSON, *, dropped: list[str], param: str = "response"
) -> JSON:
    """Preview ``response.create.response`` → GA ``RealtimeResponseCreateParams``."""
    out: JSON = {}
    for key, value in params.items():
        path = f"{param}.{key}"
        if key == "modalities":
            out["output_modalities"] = modalities_to_ga(value)
        elif key == "voice":
            _set_path(out, "audio.output.voice", value)
        elif key == "output_audio_format":
            _set_path(out, "audio.output.format", audio_format_to_ga(value, param=path))
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key == "temperature":
            dropped.append(path)
        elif key == "tool_choice":
            out[key] = tool_choice_to_ga(value)
        elif key == "tools":
            out[key] = tools_to_ga(value)
        elif key == "input" and isinstance(value, list):
            out[key] = [
                ga
                for index, item in enumerate(value)
                for ga in (
                    preview_input_item_to_ga(item, param=f"{path}[{index}]")
                    if isinstance(item, dict)
                    else [item]
                )
            ]
        else:
            out[key] = copy.deepcopy(value)
    return out


def ga_response_to_preview(response: JSON) -> JSON:
    """GA ``RealtimeResponse`` → Preview response (docs/protocol.md, Preview dialect)."""
    out: JSON = {}
    for key in _SHARED_RESPONSE_FIELDS:
        if key in response:
            out[key] = copy.deepcopy(response[key])
    if "output" in out:
        out["output"] = ga_items_to_preview(out["output"])
    if "output_modalities" in response:
        out["modalities"] = modalities_to_preview(response["output_modalities"])
    found, voice = _get_path(response, "audio.output.voice")
    if found:
        out["voice"] = voice_to_preview(voice)
    found, fmt = _get_path(response, "audio.output.format")
    if found:
        out["output_audio_format"] = audio_format_to_preview(fmt)
    return out

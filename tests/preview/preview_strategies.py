"""Hypothesis strategies for Preview client shapes and GA server events, plus GA validation."""

from __future__ import annotations

import typing
from typing import Any, Union, get_args, get_origin

from hypothesis import strategies as st
from openai.types.realtime.realtime_client_event import RealtimeClientEvent
from openai.types.realtime.response_item_reference import ResponseItemReference
from pydantic import BaseModel

from rtgate.protocol.preview import PreviewState, preview_client_to_ga

JSON = dict[str, Any]

# Names both the Preview SDK's literals and the GA SDK accept.
PREVIEW_MODEL = "gpt-4o-realtime-preview-2024-12-17"
VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"]
TRANSCRIBE_MODELS = ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
FORMATS = ["pcm16", "g711_ulaw", "g711_alaw"]

ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
texts = st.text(max_size=20)
b64 = st.sampled_from(["", "AAAA", "UklGRg=="])


def _members(u: object) -> list[Any]:
    origin = get_origin(u)
    if origin is typing.Annotated:
        return _members(get_args(u)[0])
    if origin is Union:
        return [m for a in get_args(u) for m in _members(a)]
    return [u]


GA_CLIENT_MODELS: dict[str, type[BaseModel]] = {
    v: m for m in _members(RealtimeClientEvent) for v in get_args(m.model_fields["type"].annotation)
}


def _extras(model: object, path: str = "") -> list[str]:
    """Paths of fields a GA SDK model accepted only as extras (the GA server rejects them)."""
    if isinstance(model, BaseModel):
        found = [f"{path}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += _extras(getattr(model, name), f"{path}.{name}")
        return found
    if isinstance(model, list):
        return [p for i, v in enumerate(model) for p in _extras(v, f"{path}[{i}]")]
    return []


def assert_valid_ga_client_event(event: JSON) -> None:
    """Strictly validate one GA client event against the current openai package's models.

    ``model_validate`` on the union member its ``type`` names, and no undeclared fields
    anywhere (the SDK models allow extras; the GA server answers them ``unknown_parameter``).
    ``item_reference`` inputs of ``response.create`` (typed only as params in the SDK) are
    validated with ``ResponseItemReference``.
    """
    event = dict(event)
    model = GA_CLIENT_MODELS.get(event.get("type"))  # type: ignore[arg-type]
    assert model is not None, f"type {event.get('type')!r} is not a GA client event"
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("input"), list):
        refs = [i for i in response["input"] if i.get("type") == "item_reference"]
        for ref in refs:
            assert not _extras(ResponseItemReference.model_validate(ref)), ref
        event["response"] = {
            **response,
            "input": [i for i in response["input"] if i.get("type") != "item_reference"],
        }
    validated = model.model_validate(event)
    assert not _extras(validated), f"undeclared GA fields: {_extras(validated)}"


# --- Preview client shapes ---------------------------------------------------------------

server_vad = st.fixed_dictionaries(
    {"type": st.sampled_from(["server_vad", None])},
    optional={
        "threshold": st.floats(0, 1),
        "prefix_padding_ms": st.integers(0, 2000),
        "silence_duration_ms": st.integers(0, 2000),
        "create_response": st.booleans(),
        "interrupt_response": st.booleans(),
    },
).map(lambda d: {k: v for k, v in d.items() if v is not None})
semantic_vad = st.fixed_dictionaries(
    {"type": st.just("semantic_vad")},
    optional={
        "eagerness": st.sampled_from(["low", "medium", "high", "auto"]),
        "create_response": st.booleans(),
        "interrupt_response": st.booleans(),
    },
)
transcription = st.none() | st.fixed_dictionaries(
    {"model": st.sampled_from(TRANSCRIBE_MODELS)},
    optional={"language": st.sampled_from(["en", "de"]), "prompt": texts},
)
noise_reduction = st.none() | st.fixed_dictionaries(
    {"type": st.sampled_from(["near_field", "far_field"])}
)
function_tool = st.fixed_dictionaries(
    {"name": ids},
    optional={
        "type": st.just("function"),
        "description": texts,
        "parameters": st.just({"type": "object", "properties": {}}),
    },
)
tool_choice = st.sampled_from(["auto", "none", "required"]) | ids
modalities = st.sampled_from([["text"], ["audio", "text"], ["text", "audio"]])
max_tokens = st.integers(1, 4096) | st.just("inf")

preview_session = st.fixed_dictionaries(
    {},
    optional={
        "modalities": modalities,
        "instructions": texts,
        "voice": st.sampled_from(VOICES),
        "input_audio_format": st.sampled_from(FORMATS),
        "output_audio_format": st.sampled_from(FORMATS),
        "speed": st.floats(0.25, 1.5),
        "turn_detection": st.none() | server_vad | semantic_vad,
        "input_audio_transcription": transcription,
        "input_audio_noise_reduction": noise_reduction,
        "max_response_output_tokens": max_tokens,
        "tools": st.lists(function_tool, max_size=2),
        "tool_choice": tool_choice,
        "temperature": st.floats(0.6, 1.2),
        "tracing": st.just("auto"),
    },
)
preview_transcription_session = st.fixed_dictionaries(
    {},
    optional={
        "input_audio_format": st.sampled_from(FORMATS),
        "input_audio_transcription": transcription,
        "turn_detection": st.none() | server_vad.map(lambda d: {**d, "type": "server_vad"}),
        "input_audio_noise_reduction": noise_reduction,
        "include": st.just(["item.input_audio_transcription.logprobs"]),
    },
)


def _message(role: str, parts: st.SearchStrategy[JSON]) -> st.SearchStrategy[JSON]:
    return st.fixed_dictionaries(
        {"type": st.just("message"), "role": st.just(role), "content": st.lists(parts, max_size=2)},
        optional={"id": ids, "object": st.just("realtime.item"), "status": st.just("completed")},
    )


input_text = st.fixed_dictionaries({"type": st.just("input_text"), "text": texts})
preview_item = st.one_of(
    _message("system", input_text),
    _message(
        "user",
        input_text
        | st.fixed_dictionaries(
            {"type": st.just("input_audio")}, optional={"audio": b64, "transcript": texts}
        ),
    ),
    _message(
        "assistant",
        st.fixed_dictionaries({"type": st.just("text"), "text": texts})
        | st.fixed_dictionaries(
            {"type": st.just("audio"), "transcript": texts}, optional={"audio": b64}
        ),
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call"), "name": ids, "arguments": st.just("{}")},
        optional={"id": ids, "call_id": ids},
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output"), "call_id": ids, "output": texts},
        optional={"id": ids},
    ),
)
preview_response_params = st.fixed_dictionaries(
    {},
    optional={
        "modalities": modalities,
        "instructions": texts,
        "voice": st.sampled_from(VOICES),
        "output_audio_format": st.sampled_from(FORMATS),
        "temperature": st.floats(0.6, 1.2),
        "max_response_output_tokens": max_tokens,
        "tool_choice": tool_choice,
        "tools": st.lists(function_tool, max_size=2),
        "conversation": st.sampled_from(["auto", "none"]),
        "metadata": st.dictionaries(ids, texts, max_size=2),
        "input": st.lists(
            preview_item | st.fixed_dictionaries({"type": st.just("item_reference"), "id": ids}),
            max_size=3,
        ),
    },
)


# --- GA server events --------------------------------------------------------------------

_ev = st.fixed_dictionaries({"event_id": ids.map("event_".__add__)})


def ga_session_from_preview(session: JSON, *, transcription: bool = False) -> JSON:
    """The GA session object a GA server reports after applying a translated Preview update."""
    events, _ = preview_client_to_ga(
        {"type": "session.update", "session": session}, PreviewState(transcription=transcription)
    )
    ga: JSON = events[0]["session"]
    kind = "realtime.transcription_session" if transcription else "realtime.session"
    return {**ga, "object": kind, "id": "sess_1", "expires_at": 1767233035}


ga_item = preview_item.map(
    lambda i: preview_client_to_ga({"type": "conversation.item.create", "item": i}, PreviewState())[
        0
    ][0]["item"]
)
ga_response = st.fixed_dictionaries(
    {
        "object": st.just("realtime.response"),
        "id": ids,
        "status": st.sampled_from(["in_progress", "completed", "cancelled", "incomplete"]),
        "output": st.lists(ga_item, max_size=2),
        "output_modalities": st.sampled_from([["audio"], ["text"]]),
        "audio": st.fixed_dictionaries(
            {
                "output": st.fixed_dictionaries(
                    {
                        "format": st.sampled_from(
                            [{"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcmu"}]
                        ),
                        "voice": st.sampled_from(VOICES),
                    }
                )
            }
        ),
        "max_output_tokens": max_tokens,
        "conversation_id": st.just("conv_1"),
        "metadata": st.none(),
        "usage": st.none(),
    }
)
_stream = {"response_id": ids, "item_id": ids, "output_index": st.integers(0, 3)}
_content = {**_stream, "content_index": st.integers(0, 3)}
ga_server_event = st.one_of(
    st.builds(
        lambda e, t, s: {**e, "type": t, "session": ga_session_from_preview(s)},
        _ev,
        st.sampled_from(["session.created", "session.updated"]),
        preview_session,
    ),
    st.builds(
        lambda e, t, i: {**e, "type": t, "item": i},
        _ev,
        st.sampled_from(
            ["conversation.item.added", "conversation.item.done", "conversation.item.retrieved"]
        ),
        ga_item,
    ),
    st.builds(
        lambda e, t, i, s: {**e, **s, "type": t, "item": i},
        _ev,
        st.sampled_from(["response.output_item.added", "response.output_item.done"]),
        ga_item,
        st.fixed_dictionaries({"response_id": ids, "output_index": st.integers(0, 3)}),
    ),
    st.builds(
        lambda e, t, r: {**e, "type": t, "response": r},
        _ev,
        st.sampled_from(["response.created", "response.done"]),
        ga_response,
    ),
    st.builds(
        lambda e, t, s, d: {**e, **s, "type": t, "delta": d},
        _ev,
        st.sampled_from(
            [
                "response.output_text.delta",
                "response.output_audio.delta",
                "response.output_audio_transcript.delta",
            ]
        ),
        st.fixed_dictionaries(_content),
        texts,
    ),
    st.builds(
        lambda e, s, a: {**e, **s, "type": "response.function_call_arguments.done", **a},
        _ev,
        st.fixed_dictionaries(_stream),
        st.fixed_dictionaries({"call_id": ids, "name": ids, "arguments": st.just("{}")}),
    ),
)

"""Property tests: the decoder and ``apply_update`` fail only with OpenAI-style errors.

SPEC §3: every bad frame is a non-fatal ``error`` event, so neither the decoder nor the
update logic may raise anything but :class:`RealtimeError` (the update) or return anything
but an event or an error (the decoder).
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtgate.core.ids import IdFactory
from rtgate.core.session import Session
from rtgate.protocol.client_events import (
    GA_CLIENT_EVENT_TYPES,
    DecodeLimits,
    decode_client_event,
)
from rtgate.protocol.errors import RealtimeError
from rtgate.protocol.session import (
    RealtimeSessionConfig,
    SessionConfig,
    apply_update,
    default_config,
    session_wire,
)

from .helpers import T0, checked

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Field names of the protocol, so that generated objects reach deep validation paths.
KEYS = [
    "type", "event_id", "session", "audio", "input", "output", "format", "rate", "voice",
    "speed", "turn_detection", "threshold", "prefix_padding_ms", "silence_duration_ms",
    "idle_timeout_ms", "create_response", "interrupt_response", "eagerness", "transcription",
    "model", "language", "prompt", "delay", "noise_reduction", "strength", "instructions",
    "tools", "tool_choice", "name", "parameters", "max_output_tokens", "tracing", "truncation",
    "retention_ratio", "include", "output_modalities", "item", "item_id", "previous_item_id",
    "content", "role", "text", "transcript", "image_url", "arguments", "call_id", "id",
    "response", "conversation", "metadata", "content_index", "audio_end_ms", "response_id",
    "server_label", "id", "object", "expires_at",
]
VALUES = [
    "realtime", "transcription", "server_vad", "semantic_vad", "audio/pcm", "audio/pcmu",
    "message", "user", "assistant", "system", "input_text", "input_audio", "output_audio",
    "function", "function_call", "function_call_output", "item_reference", "none", "auto",
    "text", "inf", "alloy", "root", "AAAA", *GA_CLIENT_EVENT_TYPES,
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(VALUES)
    | st.text(max_size=12)
)
keys = st.sampled_from(KEYS) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
event_objects = st.builds(
    lambda kind, body: {**body, "type": kind},
    st.sampled_from(GA_CLIENT_EVENT_TYPES) | st.text(max_size=10),
    st.dictionaries(keys, json_values, max_size=5),
)
small_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(keys, children, max_size=3),
    max_leaves=6,
)
small_events = st.builds(
    lambda kind, body: {**body, "type": kind},
    st.sampled_from(GA_CLIENT_EVENT_TYPES),
    st.dictionaries(keys, small_values, max_size=4),
)


def _decodes_cleanly(frame: str | bytes) -> None:
    result = decode_client_event(frame, DecodeLimits(max_append_bytes=4096, max_json_depth=8))
    if isinstance(result, RealtimeError):
        wire = result.to_wire()
        assert isinstance(wire["message"], str) and wire["message"]
        assert wire["code"] is None or isinstance(wire["code"], str)
    else:
        assert result.type in GA_CLIENT_EVENT_TYPES


@FAST
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_decoder_never_raises_on_arbitrary_text(frame: str | bytes) -> None:
    """SPEC §3: any frame decodes to an event or an error, never an exception."""
    _decodes_cleanly(frame)


@FAST
@given(json_values)
def test_decoder_never_raises_on_arbitrary_json(value: Any) -> None:
    """SPEC §3: any JSON value decodes to an event or an error."""
    _decodes_cleanly(json.dumps(value))


@FAST
@given(event_objects)
def test_decoder_never_raises_on_event_shaped_json(obj: dict[str, Any]) -> None:
    """SPEC §3: objects with a real event ``type`` and random fields decode or error."""
    _decodes_cleanly(json.dumps(obj))


def _patches(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda body, keep_type: {**body, "type": kind} if keep_type else body,
        st.dictionaries(keys, json_values, max_size=6),
        st.booleans(),
    )


@FAST
@given(st.sampled_from(["realtime", "transcription"]).flatmap(
    lambda kind: st.tuples(st.just(kind), _patches(kind) | json_values)))
def test_apply_update_returns_config_or_realtime_error(case: tuple[str, Any]) -> None:
    """SPEC §4.1: an update yields a valid config or a RealtimeError, never anything else."""
    kind, patch = case
    current: SessionConfig = default_config(kind, "gpt-realtime")  # type: ignore[arg-type]
    before = current.model_dump()
    try:
        new = apply_update(current, patch, voice_locked=True)
    except RealtimeError as error:
        assert error.message and (error.code is None or isinstance(error.code, str))
    else:
        assert new.type == kind
        # The result is encodable as session.updated.
        json.dumps(session_wire(new, session_id="sess_x", expires_at=0))
        if isinstance(new, RealtimeSessionConfig):
            assert new.model == "gpt-realtime"
            assert new.audio.output.voice == "alloy"
    assert current.model_dump() == before  # rejected or not, the old config is untouched


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(small_events, max_size=5))
def test_session_survives_arbitrary_event_sequences(objs: list[dict[str, Any]]) -> None:
    """SPEC §3: every bad event is a non-fatal error; all emitted events stay valid."""
    session = Session(session_id="sess_p", model="gpt-realtime", now=T0,
                      ids=IdFactory(random.Random(0)))
    checked(session.start())
    for obj in objs:
        decoded = decode_client_event(json.dumps(obj))
        if isinstance(decoded, RealtimeError):
            checked(session.report(decoded))
        else:
            checked(session.handle(decoded, T0))

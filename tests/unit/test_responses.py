"""Responses: event order, concurrency, overrides, cancel, failure (SPEC §6, §10.1-10.3)."""

from __future__ import annotations

import json

from rtgate.core import effects as fx

from .helpers import (
    Harness,
    assert_error,
    assert_events,
    b64,
    checked,
    effects,
    events,
    first,
    silence,
    start_effect,
    types,
    user_text,
)

TEXT_TAIL = [
    "response.output_text.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]


def text_session() -> Harness:
    h = Harness()
    h.update({"type": "realtime", "output_modalities": ["text"],
              "audio": {"input": {"turn_detection": None}}})
    return h


def test_text_response_follows_spec_10_1() -> None:
    """SPEC §10.1: the full text-in → text-out event order and shapes."""
    h = text_session()
    out = h.create_item(user_text("hi", id="u1"))
    out += h.create_response()
    rid = start_effect(out).plan.response_id
    out += h.text(rid, "Hel", "lo")
    out += h.done(rid)
    assert_events(out, [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        *TEXT_TAIL,
    ])
    evs = events(out)
    created = evs[2]["response"]
    assert created["status"] == "in_progress" and created["status_details"] is None
    assert created["output"] == [] and created["usage"] is None and created["metadata"] is None
    assert created["output_modalities"] == ["text"] and created["max_output_tokens"] == "inf"
    assert created["conversation_id"] == h.session.conversation.id
    assert created["audio"]["output"]["voice"] == "alloy"
    assistant = evs[3]["item"]
    assert assistant["status"] == "in_progress" and assistant["content"] == []
    assert evs[4]["previous_item_id"] == "u1" and evs[4]["item"] == assistant
    assert evs[5]["part"] == {"type": "text", "text": ""}
    assert first(out, "response.output_text.done")["text"] == "Hello"
    assert first(out, "response.content_part.done")["part"] == {"type": "text", "text": "Hello"}
    final = first(out, "response.output_item.done")["item"]
    assert final["status"] == "completed"
    assert final["content"] == [{"type": "output_text", "text": "Hello"}]
    assert [e for e in evs if e["type"] == "conversation.item.done"][-1]["item"] == final
    done = first(out, "response.done")["response"]
    assert done["status"] == "completed" and done["output"] == [final]
    assert done["usage"] is not None
    rate = first(out, "rate_limits.updated")["rate_limits"][0]
    assert rate["name"] == "tokens"


def test_audio_response_follows_spec_10_2() -> None:
    """SPEC §10.2 steps 8-12: audio deltas with transcript deltas, then the done sequence."""
    h = Harness()
    rid = h.start_response()
    out = h.audio(rid, silence(100), "Hi ")
    out += h.audio(rid, silence(100), "there")
    out += h.done(rid)
    assert_events(out, [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ])
    assert first(out, "response.content_part.added")["part"] == {"type": "audio", "transcript": ""}
    assert first(out, "response.output_audio.delta")["delta"] == b64(silence(100))
    assert first(out, "response.output_audio_transcript.done")["transcript"] == "Hi there"
    assert first(out, "response.content_part.done")["part"] == {
        "type": "audio", "transcript": "Hi there"}
    done = first(out, "response.done")["response"]
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": "Hi there"}]
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0


def test_function_call_follows_spec_10_3() -> None:
    """SPEC §10.3 steps 3-6: function_call item, argument deltas, done with ``name``."""
    h = text_session()
    h.update({"type": "realtime", "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]})
    rid = h.start_response()
    out = checked(h.session.on_response_tool_call(rid, 0, "get_weather", "call_abc", '{"city":'))
    out += checked(h.session.on_response_tool_call(rid, 0, None, None, '"Paris"}'))
    out += h.done(rid)
    assert_events(out, [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "conversation.item.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ])
    added = first(out, "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    assert (added["name"], added["call_id"], added["arguments"]) == ("get_weather", "call_abc", "")
    args_done = first(out, "response.function_call_arguments.done")
    assert args_done["name"] == "get_weather" and args_done["call_id"] == "call_abc"
    assert args_done["arguments"] == '{"city":"Paris"}'
    final = first(out, "response.output_item.done")["item"]
    assert final["status"] == "completed" and final["arguments"] == '{"city":"Paris"}'
    assert first(out, "response.done")["response"]["output"] == [final]


def test_text_then_function_call_output_indexes() -> None:
    """SPEC §10.3 step 6: an assistant message at output_index 0 and the call at 1."""
    h = text_session()
    rid = h.start_response()
    out = h.text(rid, "Let me check.")
    out += checked(h.session.on_response_tool_call(rid, 0, "f", None, "{}"))
    out += h.done(rid)
    assert first(out, "response.output_text.done")["output_index"] == 0
    assert first(out, "response.function_call_arguments.done")["output_index"] == 1
    assert [o["type"] for o in first(out, "response.done")["response"]["output"]] == [
        "message", "function_call"]


def test_invalid_call_arguments_mark_item_incomplete() -> None:
    """Arguments that are not JSON leave the call ``incomplete`` (never a broken item)."""
    h = text_session()
    rid = h.start_response()
    h.session.on_response_tool_call(rid, 0, "f", None, '{"a":')
    final = first(h.done(rid), "response.output_item.done")["item"]
    assert final["status"] == "incomplete"


def test_one_active_response_per_conversation() -> None:
    """SPEC §9.2: a second default response is ``conversation_already_has_active_response``."""
    h = text_session()
    rid = h.start_response()
    out = h.create_response(event_id="second")
    event = assert_error(out, code="conversation_already_has_active_response", event_id="second")
    assert rid in event["error"]["message"]
    assert effects(out) == []
    h.done(rid)
    h.start_response()


def test_out_of_band_response_runs_in_parallel() -> None:
    """SPEC §6: ``conversation: "none"`` runs beside the default response, outside the conversation."""
    h = text_session()
    h.create_item(user_text("hi", id="u1"))
    main = h.start_response()
    out = h.create_response({"conversation": "none", "metadata": {"topic": "classify"}})
    oob = start_effect(out).plan
    assert oob.conversation is False and oob.response_id != main
    assert first(out, "response.created")["response"]["conversation_id"] is None
    out = h.text(oob.response_id, "positive")
    out += h.done(oob.response_id)
    assert "conversation.item.added" not in types(out)
    assert "conversation.item.done" not in types(out)
    done = first(out, "response.done")["response"]
    assert done["conversation_id"] is None and done["metadata"] == {"topic": "classify"}
    assert done["output"][0]["content"][0]["text"] == "positive"
    assert [i.id for i in h.session.conversation.items()] == ["u1"]
    assert h.session.active_response_id == main


def test_response_input_item_reference() -> None:
    """SPEC §5/§6: ``input`` may mix item references and inline items."""
    h = text_session()
    h.create_item(user_text("context", id="ctx"))
    h.create_item(user_text("other", id="other"))
    plan = start_effect(h.create_response({
        "conversation": "none",
        "input": [{"type": "item_reference", "id": "ctx"}, user_text("inline", id="inl")],
    })).plan
    assert [i.wire["id"] for i in plan.items] == ["ctx", "inl"]
    assert "inl" not in h.session.conversation


def test_response_input_unknown_reference_is_error() -> None:
    """SPEC §9.2: a reference to an unknown item is an error; no response starts."""
    h = text_session()
    out = h.create_response({"input": [{"type": "item_reference", "id": "nope"}]},
                            event_id="ref")
    assert_error(out, code="item_not_found", param="response.input[0].id", event_id="ref")
    assert effects(out) == [] and h.session.active_response_id is None


def test_per_response_overrides_reach_plan_and_response() -> None:
    """SPEC §6: per-response overrides land in the backend plan and the response object."""
    h = Harness()
    out = h.create_response({
        "instructions": "Answer in French.",
        "output_modalities": ["text"],
        "audio": {"output": {"voice": "marin"}},
        "max_output_tokens": 50,
        "metadata": {"k": "v"},
        "tool_choice": "none",
    })
    plan = start_effect(out).plan
    assert plan.instructions == "Answer in French."
    assert plan.output_modalities == ["text"] and plan.voice == "marin"
    assert plan.max_output_tokens == 50 and plan.metadata == {"k": "v"}
    assert plan.tool_choice == "none" and plan.conversation is True
    response = first(out, "response.created")["response"]
    assert response["output_modalities"] == ["text"] and response["max_output_tokens"] == 50
    assert response["metadata"] == {"k": "v"} and response["audio"]["output"]["voice"] == "marin"


def test_session_defaults_reach_plan() -> None:
    """SPEC §6: without overrides the plan uses the session config and the conversation."""
    h = text_session()
    h.update({"type": "realtime", "instructions": "Be terse.", "max_output_tokens": 100})
    h.create_item(user_text("a", id="a"))
    plan = start_effect(h.create_response()).plan
    assert plan.instructions == "Be terse." and plan.max_output_tokens == 100
    assert plan.output_modalities == ["text"] and plan.voice == "alloy"
    assert [i.wire["id"] for i in plan.items] == ["a"]


def test_both_output_modalities_rejected() -> None:
    """SPEC §4.1: ``["text", "audio"]`` at once is not allowed."""
    out = Harness().create_response({"output_modalities": ["text", "audio"]})
    assert_error(out, code="invalid_value", param="response.output_modalities")


def test_response_cancel_keeps_partial_output() -> None:
    """SPEC §10.5 manual variant: cancel → ``cancelled``/``client_cancelled``, partial text kept."""
    h = text_session()
    rid = h.start_response()
    h.text(rid, "Once upon")
    out = h.send({"type": "response.cancel"})
    assert_events(out, TEXT_TAIL)
    assert effects(out) == [fx.CancelResponse(rid)]
    done = first(out, "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": "Once upon"}]
    assert h.session.conversation.get(done["output"][0]["id"]).wire["content"][0]["text"] == (
        "Once upon")


def test_cancel_by_response_id_targets_out_of_band() -> None:
    """SPEC §7: ``response.cancel.response_id`` cancels that response only."""
    h = text_session()
    main = h.start_response()
    oob = h.start_response({"conversation": "none"})
    out = h.send({"type": "response.cancel", "response_id": oob})
    assert effects(out) == [fx.CancelResponse(oob)]
    assert h.session.active_response_id == main


def test_cancel_without_active_response_is_error() -> None:
    """SPEC §9.2: ``response_cancel_not_active``."""
    out = Harness().send({"type": "response.cancel", "event_id": "c1"})
    assert_error(out, code="response_cancel_not_active", param=None, event_id="c1")


def test_late_chunks_after_cancel_are_ignored() -> None:
    """SPEC §6 lifecycle: backend output after a cancel is dropped, not an error."""
    h = text_session()
    rid = h.start_response()
    h.send({"type": "response.cancel"})
    assert h.text(rid, "late") == []
    assert h.audio(rid, silence(100), "late") == []
    assert h.session.on_response_tool_call(rid, 0, "f", None, "{}") == []
    assert h.done(rid) == []
    assert h.session.on_response_failed(rid, "x", "y") == []


def test_backend_failure_ends_response_failed() -> None:
    """Issue 2: a backend failure ends that response ``failed`` with the error, not the session."""
    h = text_session()
    rid = h.start_response()
    h.text(rid, "partial")
    out = checked(h.session.on_response_failed(rid, "backend_timeout", "The backend timed out."))
    assert_events(out, TEXT_TAIL)
    done = first(out, "response.done")["response"]
    assert done["status"] == "failed"
    details = done["status_details"]
    assert details["type"] == "failed"
    assert details["error"]["code"] == "backend_timeout"
    assert details["error"]["type"] == "server_error"
    h.start_response()


def test_length_finish_is_incomplete_max_output_tokens() -> None:
    """SPEC §6: hitting max_output_tokens ends ``incomplete`` / ``max_output_tokens``."""
    h = text_session()
    rid = h.start_response({"max_output_tokens": 5})
    h.text(rid, "one two three")
    done = first(h.done(rid, reason="length"), "response.done")["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["output"][0]["status"] == "incomplete"


def test_rate_limits_after_every_response_done() -> None:
    """SPEC §10.1 step 17: ``rate_limits.updated`` follows every ``response.done``."""
    h = text_session()
    for finish in ("done", "cancel", "fail"):
        rid = h.start_response()
        if finish == "done":
            out = h.done(rid)
        elif finish == "cancel":
            out = h.send({"type": "response.cancel"})
        else:
            out = checked(h.session.on_response_failed(rid, "x", "boom"))
        assert types(out)[-2:] == ["response.done", "rate_limits.updated"]


def test_empty_response_has_no_output() -> None:
    """SPEC §6: a backend that produces nothing still completes the response."""
    h = text_session()
    rid = h.start_response()
    out = h.done(rid)
    assert_events(out, ["response.done", "rate_limits.updated"])
    assert events(out)[0]["response"]["output"] == []


def test_usage_is_reported() -> None:
    """SPEC §10.1 step 16: ``response.done`` carries usage."""
    h = text_session()
    rid = h.start_response()
    h.text(rid, "hi")
    h.session.on_response_usage(rid, 12, 3, cached_tokens=4)
    usage = first(h.done(rid), "response.done")["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (12, 3, 15)
    assert usage["input_token_details"]["cached_tokens"] == 4


def test_transcription_session_rejects_response_create() -> None:
    """SPEC §4.2: no ``response.*`` in a transcription session."""
    h = Harness(kind="transcription")
    out = h.create_response(event_id="r1")
    assert_error(out, code="invalid_value", event_id="r1")
    assert effects(out) == []


def test_response_create_rejects_unknown_field() -> None:
    """SPEC §3: an unknown field in ``response`` is ``unknown_parameter``."""
    out = Harness().create_response({"modalities": ["text"]}, event_id="r2")
    assert_error(out, code="unknown_parameter", param="response.modalities", event_id="r2")


def test_function_call_output_then_response() -> None:
    """SPEC §10.3 steps 7-8: the tool output is in the next response's context."""
    h = text_session()
    rid = h.start_response()
    h.session.on_response_tool_call(rid, 0, "f", "call_1", json.dumps({"x": 1}))
    h.done(rid)
    h.create_item({"type": "function_call_output", "call_id": "call_1", "output": "42"})
    plan = start_effect(h.create_response()).plan
    assert [i.wire["type"] for i in plan.items] == ["function_call", "function_call_output"]

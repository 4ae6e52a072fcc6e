"""Conversation items: create, placement, retrieve, delete, truncate (SPEC §5, §7, §8)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from rtgate.core.limits import CoreLimits

from .helpers import (
    Harness,
    assert_error,
    assert_events,
    b64,
    events,
    first,
    silence,
    user_text,
)

PNG = "data:image/png;base64,iVBORw0KGgo="


def created_item(h: Harness, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out = h.create_item(item, **extra)
    assert_events(out, ["conversation.item.added", "conversation.item.done"])
    added, done = events(out)
    assert added["item"] == done["item"]
    assert added["previous_item_id"] == done["previous_item_id"]
    return added


def retrieve(h: Harness, item_id: str) -> dict[str, Any]:
    out = h.send({"type": "conversation.item.retrieve", "item_id": item_id})
    assert_events(out, ["conversation.item.retrieved"])
    item: dict[str, Any] = events(out)[0]["item"]
    return item


def ids_in_order(h: Harness) -> list[str]:
    return [item.id for item in h.session.conversation.items()]


@pytest.mark.parametrize(
    ("item", "content"),
    [
        (user_text("hi"), [{"type": "input_text", "text": "hi"}]),
        ({"type": "message", "role": "user", "content": [{"type": "input_audio"}]},
         [{"type": "input_audio", "transcript": None}]),
        ({"type": "message", "role": "user",
          "content": [{"type": "input_image", "image_url": PNG, "detail": "low"}]},
         [{"type": "input_image", "image_url": PNG, "detail": "low"}]),
        ({"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be nice."}]},
         [{"type": "input_text", "text": "Be nice."}]),
        ({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
         [{"type": "output_text", "text": "Hi!"}]),
    ],
)
def test_item_create_message_content_types(item: dict[str, Any], content: list[Any]) -> None:
    """SPEC §5/§10.1: a message item is added then done, ``status: completed``."""
    added = created_item(Harness(), item)
    wire = added["item"]
    assert wire["type"] == "message" and wire["role"] == item["role"]
    assert wire["status"] == "completed" and wire["object"] == "realtime.item"
    assert wire["id"].startswith("item_")
    assert wire["content"] == content
    assert added["previous_item_id"] is None


def test_item_create_function_call_and_output() -> None:
    """SPEC §10.3 step 7: function_call and function_call_output items."""
    h = Harness()
    call = created_item(h, {"type": "function_call", "name": "get_weather",
                            "arguments": '{"city":"Paris"}', "call_id": "call_1"})["item"]
    assert (call["name"], call["call_id"], call["arguments"]) == (
        "get_weather", "call_1", '{"city":"Paris"}')
    output = created_item(h, {"type": "function_call_output", "call_id": "call_1",
                              "output": "sunny"})
    assert output["item"]["output"] == "sunny"
    assert output["previous_item_id"] == call["id"]


def test_function_call_without_call_id_gets_one() -> None:
    """SPEC §3: the server mints ``call_…`` ids when the client gives none."""
    wire = created_item(Harness(), {"type": "function_call", "name": "f", "arguments": "{}"})["item"]
    assert wire["call_id"].startswith("call_")


def test_client_chosen_item_id_is_kept() -> None:
    """SPEC §3: clients may supply their own item ``id``."""
    h = Harness()
    assert created_item(h, user_text("a", id="my_item"))["item"]["id"] == "my_item"
    assert retrieve(h, "my_item")["content"][0]["text"] == "a"


def test_duplicate_item_id_rejected() -> None:
    """SPEC §9.2: a second item with an existing id is an error; the first stays."""
    h = Harness()
    created_item(h, user_text("a", id="dup"))
    out = h.create_item(user_text("b", id="dup"), event_id="evt_dup")
    assert_error(out, code="item_already_exists", param="item.id", event_id="evt_dup")
    assert ids_in_order(h) == ["dup"]
    assert retrieve(h, "dup")["content"][0]["text"] == "a"


def test_previous_item_id_places_items() -> None:
    """SPEC §7: ``previous_item_id`` inserts after that item; ``"root"`` inserts first."""
    h = Harness()
    created_item(h, user_text("a", id="a"))
    created_item(h, user_text("c", id="c"))
    assert created_item(h, user_text("b", id="b"), previous_item_id="a")["previous_item_id"] == "a"
    assert created_item(h, user_text("z", id="z"), previous_item_id="root")[
        "previous_item_id"] is None
    assert ids_in_order(h) == ["z", "a", "b", "c"]


def test_unknown_previous_item_id_is_error_and_adds_nothing() -> None:
    """SPEC §9.2: an unknown ``previous_item_id`` is an error; nothing is added."""
    h = Harness()
    created_item(h, user_text("a", id="a"))
    out = h.create_item(user_text("x", id="x"), previous_item_id="nope", event_id="evt_p")
    assert_error(out, code="item_not_found", param="previous_item_id", event_id="evt_p")
    assert ids_in_order(h) == ["a"]


def test_assistant_output_audio_content_rejected() -> None:
    """SPEC §5: ``conversation.item.create`` cannot create assistant audio content."""
    h = Harness()
    out = h.create_item({"type": "message", "role": "assistant",
                         "content": [{"type": "output_audio", "transcript": "hi"}]})
    assert_error(out, code="invalid_value", param="item.content[0].type")
    assert ids_in_order(h) == []


def test_system_message_with_audio_rejected() -> None:
    """SPEC §5: system messages take ``input_text`` only."""
    out = Harness().create_item({"type": "message", "role": "system",
                                 "content": [{"type": "input_audio", "audio": b64(silence(10))}]})
    assert_error(out, code="invalid_value", param="item.content[0].type")


def test_input_image_needs_image_url() -> None:
    """SPEC §5: an ``input_image`` part carries ``image_url``."""
    out = Harness().create_item({"type": "message", "role": "user",
                                 "content": [{"type": "input_image"}]})
    assert_error(out, code="missing_required_parameter", param="item.content[0].image_url")


def test_item_unknown_field_rejected() -> None:
    """SPEC §3: an unknown field in an item is ``unknown_parameter``."""
    out = Harness().create_item(user_text("a", colour="red"), event_id="e1")
    assert_error(out, code="unknown_parameter", param="item.colour", event_id="e1")


def test_item_invalid_base64_audio_rejected() -> None:
    """SPEC §3: item audio must be valid base64."""
    out = Harness().create_item({"type": "message", "role": "user",
                                 "content": [{"type": "input_audio", "audio": "!!notb64"}]})
    assert_error(out, code="invalid_value", param="item.content[0].audio")


def test_retrieve_has_audio_added_and_done_do_not() -> None:
    """SPEC §5: audio bytes appear only in ``conversation.item.retrieved``."""
    h = Harness()
    audio = bytes(range(256)) * 10
    added = created_item(h, {"type": "message", "role": "user", "id": "u1",
                             "content": [{"type": "input_audio", "audio": b64(audio),
                                          "transcript": "hello"}]})
    assert added["item"]["content"] == [{"type": "input_audio", "transcript": "hello"}]
    got = retrieve(h, "u1")
    assert got["content"][0]["audio"] == b64(audio)
    assert got["content"][0]["transcript"] == "hello"


def test_retrieve_unknown_item_is_error() -> None:
    """SPEC §9.2: retrieve of an unknown item is an error echoing the event_id."""
    out = Harness().send({"type": "conversation.item.retrieve", "item_id": "nope",
                          "event_id": "evt_r"})
    assert_error(out, code="item_not_found", param="item_id", event_id="evt_r")


def test_delete_removes_item() -> None:
    """SPEC §7: delete answers ``conversation.item.deleted``; the item is gone."""
    h = Harness()
    created_item(h, user_text("a", id="a"))
    out = h.send({"type": "conversation.item.delete", "item_id": "a"})
    assert_events(out, ["conversation.item.deleted"])
    assert events(out)[0]["item_id"] == "a"
    assert ids_in_order(h) == []
    out = h.send({"type": "conversation.item.delete", "item_id": "a", "event_id": "again"})
    assert_error(out, code="item_not_found", event_id="again")


def test_truncate_non_assistant_item_is_error() -> None:
    """SPEC §7: only assistant audio can be truncated."""
    h = Harness()
    created_item(h, user_text("a", id="a"))
    out = h.send({"type": "conversation.item.truncate", "item_id": "a", "content_index": 0,
                  "audio_end_ms": 0, "event_id": "tr"})
    assert_error(out, code="invalid_value", event_id="tr")


def assistant_audio_item(h: Harness) -> str:
    """A completed assistant audio item: 3 chunks of 100 ms, one word each."""
    rid = h.start_response()
    h.audio(rid, silence(100), "One ")
    h.audio(rid, silence(100), "two ")
    h.audio(rid, silence(100), "three.")
    out = h.done(rid)
    return str(first(out, "response.done")["response"]["output"][0]["id"])


def test_truncate_past_audio_end_is_error_and_session_still_works() -> None:
    """SPEC §7/issue 2: an ``audio_end_ms`` past the audio is an error, never a broken session."""
    h = Harness()
    item_id = assistant_audio_item(h)
    out = h.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                  "audio_end_ms": 5000, "event_id": "tr"})
    assert_error(out, code="invalid_value", param="audio_end_ms", event_id="tr")
    assert retrieve(h, item_id)["content"][0]["transcript"] == "One two three."
    created_item(h, user_text("still here"))


def test_truncate_trims_audio_and_transcript() -> None:
    """SPEC §10.5 step 5: truncation cuts the audio and drops the unheard transcript."""
    h = Harness()
    item_id = assistant_audio_item(h)
    out = h.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                  "audio_end_ms": 150})
    assert_events(out, ["conversation.item.truncated"])
    ev = events(out)[0]
    assert (ev["item_id"], ev["content_index"], ev["audio_end_ms"]) == (item_id, 0, 150)
    got = retrieve(h, item_id)
    assert got["content"][0]["transcript"] == "One "
    assert got["content"][0]["audio"] == b64(silence(150))


def test_truncate_at_full_length_keeps_transcript() -> None:
    """SPEC §7: truncating at the end of the audio keeps everything."""
    h = Harness()
    item_id = assistant_audio_item(h)
    assert_events(h.send({"type": "conversation.item.truncate", "item_id": item_id,
                          "content_index": 0, "audio_end_ms": 300}),
                  ["conversation.item.truncated"])
    assert retrieve(h, item_id)["content"][0]["transcript"] == "One two three."


def test_item_limit_reports_true_previous_item() -> None:
    """SPEC §7: at the item limit the oldest item leaves; ``previous_item_id`` stays right."""
    from rtgate.core.limits import CoreLimits

    h = Harness(limits=CoreLimits(max_items=2))
    created_item(h, user_text("a", id="a"))
    created_item(h, user_text("b", id="b"))
    out = h.create_item(user_text("c", id="c"))
    # The drop is announced, never silent (issue 17).
    assert_events(out, ["conversation.item.added", "conversation.item.done",
                        "conversation.item.deleted"])
    assert events(out)[0]["previous_item_id"] == "b" and events(out)[2]["item_id"] == "a"
    assert ids_in_order(h) == ["b", "c"]


def test_item_limit_keeps_the_item_just_added() -> None:
    """An item announced as added is in the conversation, even when inserted at ``root``."""
    from rtgate.core.limits import CoreLimits

    h = Harness(limits=CoreLimits(max_items=2))
    created_item(h, user_text("a", id="a"))
    created_item(h, user_text("b", id="b"))
    out = h.create_item(user_text("r", id="r"), previous_item_id="root")
    assert events(out)[-1] == {"type": "conversation.item.deleted",
                               "event_id": events(out)[-1]["event_id"], "item_id": "a"}
    assert ids_in_order(h) == ["r", "b"]
    assert retrieve(h, "r")["id"] == "r"


@pytest.mark.parametrize(("image_url", "message"), [
    ("https://example.com/cat.png", "expected a data URL"),
    ("data:image/gif;base64,R0lGODlh", "expected a data URL"),
    ("data:image/png;base64,not base64!", "not valid base64"),
    ("data:image/jpeg;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(), "not a JPEG"),
    ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(2048)).decode(), "at most 1024"),
])
def test_bad_images_name_the_parameter(image_url: str, message: str) -> None:
    """Images are PNG or JPEG data URLs within max_image_bytes; anything else is invalid_value
    naming ``item.content[i].image_url``, and nothing is added."""
    h = Harness(limits=CoreLimits(max_image_bytes=1024))
    out = h.create_item({"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": image_url}]})
    assert_error(out, code="invalid_value", param="item.content[1].image_url")
    assert message in events(out)[0]["error"]["message"]
    assert len(h.session.conversation) == 0


def test_session_that_cannot_see_refuses_images() -> None:
    h = Harness()
    h.session.accepts_images = False
    out = h.create_item({"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": PNG}]})
    assert_error(out, code="image_input_not_supported", param="item.content[0].image_url")

"""Images with a profile whose model cannot see (the test server's fake model, like the
embedded SmolLM2): a clear refusal instead of an answer; bad images name the parameter."""

from __future__ import annotations

import base64

import pytest

from rtgate.testing.server import ServerHandle

from .conftest import Events, assert_error, client_for

pytestmark = pytest.mark.e2e

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()


async def test_model_that_cannot_see_refuses_images(server: ServerHandle) -> None:
    """The image item is refused with image_input_not_supported; nothing is added, and the
    session answers the next text turn."""
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        await conn.send({"type": "conversation.item.create", "event_id": "evt_img", "item": {
            "type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": PNG}]}})
        error = await ev.next()
        assert_error(error, "image_input_not_supported", event_id="evt_img", param="item.content[1].image_url")
        assert "cannot see images" in error["error"]["message"]
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await ev.expect("session.updated")
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        await conn.response.create()
        done = (await ev.until("response.done"))[-1]
        assert done["response"]["status"] == "completed"
        assert len(done["response"]["output"]) == 1

"""A server without an extra (rtgate.extras) on real sockets: what needs the extra is refused
with an OpenAI-shaped error naming it, and everything else keeps working.

The extra is made "missing" before the server starts (its module list points at a module
that does not exist), exactly as in a base install, where scripts/check-plain-install.sh
checks the same faces from a venv without any extra.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from rtgate import extras
from rtgate.pipeline.builtin import EchoLLM, ToneTTS
from rtgate.pipeline.responder import Pipeline
from rtgate.server.settings import Settings
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, assert_error, client_for, types

pytestmark = pytest.mark.e2e

KEY = "sk-test"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    """rtgate without the webrtc, sip and mcp extras: the builtin echo model, no VAD (as
    without the speech extra)."""
    with pytest.MonkeyPatch.context() as patch:
        for extra in ("webrtc", "sip", "mcp"):
            patch.setitem(extras.EXTRAS, extra, ("rtgate_tests_no_such_module",))
        profiles = {"default": Pipeline("echo", EchoLLM(), ToneTTS())}
        with running_server(Settings(api_keys=(KEY,)), profiles=lambda s: profiles,
                            vad_factory=lambda: None) as handle:
            yield handle


def post(server: ServerHandle, path: str, key: str = KEY, content_type: str = "application/json",
         content: bytes = b"{}") -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{server.port}{path}", content=content, timeout=10.0,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})


def test_webrtc_offer_names_the_extra(server: ServerHandle) -> None:
    reply = post(server, "/v1/realtime/calls", content=b"v=0\r\n", content_type="application/sdp")
    assert reply.status_code == 501
    error = reply.json()["error"]
    assert error["code"] == "webrtc_not_installed" and error["type"] == "server_error"
    assert "pip install 'rtgate[webrtc]'" in error["message"]
    assert post(server, "/v1/realtime/calls", key="wrong", content=b"v=0\r\n").status_code == 401


@pytest.mark.parametrize("action", ["accept", "reject", "refer"])
def test_sip_call_routes_name_the_extra(server: ServerHandle, action: str) -> None:
    reply = post(server, f"/openai/v1/realtime/calls/rtc_0123456789abcdef/{action}")
    assert reply.status_code == 501
    error = reply.json()["error"]
    assert error["code"] == "sip_not_installed" and "pip install 'rtgate[sip]'" in error["message"]
    assert post(server, f"/v1/realtime/calls/rtc_0/{action}", key="wrong").status_code == 401


async def test_mcp_listing_fails_naming_the_extra_and_the_session_goes_on(server: ServerHandle) -> None:
    async with client_for(server).realtime.connect(model="gpt-realtime") as conn:
        ev = Events(conn)
        await ev.expect("session.created")
        tool = {"type": "mcp", "server_label": "tests", "server_url": "http://127.0.0.1:9/mcp",
                "require_approval": "never"}
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [tool]})
        events = await ev.until("conversation.item.done")
        assert types(events)[-2:] == ["mcp_list_tools.failed", "conversation.item.done"]
        assert events[-1]["item"]["tools"] == []
        error = await ev.next()
        assert_error(error, "mcp_list_tools_failed")
        assert "pip install 'rtgate[mcp]'" in error["error"]["message"]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "still here"}]})
        await ev.until("conversation.item.done")
        await conn.response.create()
        done = (await ev.until("response.done"))[-1]
        assert done["response"]["status"] == "completed"

"""Client events are handled in the order they were sent, with and without the direct
message path (server/ws_protocol.py, ``MessageTap``; setting ``ws_direct_messages``).

The client sends everything before reading anything; each item names the one before it
as ``previous_item_id``, an append of silence follows each item (the commit then follows
the last item), and malformed events in the stream must be reported in place with their
``event_id``. Which messages go direct and which queue (the session task still starting,
an earlier message still queued) is unit-tested in tests/unit/test_ws_protocol.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from rtgate.server.settings import Settings
from rtgate.testing.server import ServerHandle, running_server

from .conftest import Events, client_for

pytestmark = pytest.mark.e2e

ITEMS = 40
SILENCE_20MS = base64.b64encode(bytes(960)).decode()


@pytest.fixture(scope="module", params=[True, False], ids=["direct", "asgi"])
def order_server(request: pytest.FixtureRequest) -> Iterator[ServerHandle]:
    settings = Settings(api_keys=("sk-test",), ws_direct_messages=request.param)
    with running_server(settings) as handle:
        yield handle


async def test_a_burst_of_events_is_handled_in_order(order_server: ServerHandle) -> None:
    async with client_for(order_server).realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}},
        })
        previous = "root"
        for n in range(ITEMS):
            item_id = f"item_{n:03d}"
            await conn.conversation.item.create(
                event_id=f"evt_{n:03d}",
                previous_item_id=previous,
                item={"id": item_id, "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": str(n)}]},
            )
            await conn.input_audio_buffer.append(audio=SILENCE_20MS)
            if n % 10 == 9:
                await conn._connection.send('{"type": "input_audio_buffer.append", "audio": 7')
                await conn.send({"type": "no.such.event", "event_id": f"bad_{n:03d}"})
            previous = item_id
        await conn.input_audio_buffer.commit(event_id="evt_commit")

        ev = Events(conn)
        assert (await ev.expect("session.created"))["session"]["type"] == "realtime"
        await ev.expect("session.updated")
        added: list[str] = []
        errors: list[tuple[str | None, str | None]] = []
        events = await ev.until("input_audio_buffer.committed")
        for event in events:
            if event["type"] == "conversation.item.added":
                added.append(event["item"]["id"])
                assert event["previous_item_id"] == (added[-2] if len(added) > 1 else None)
            elif event["type"] == "error":
                errors.append((event["error"]["code"], event["error"].get("event_id")))
        assert added == [f"item_{n:03d}" for n in range(ITEMS)]
        assert errors == [
            error
            for n in range(9, ITEMS, 10)
            for error in (("invalid_json", None), ("invalid_value", f"bad_{n:03d}"))
        ]
        assert events[-1]["previous_item_id"] == f"item_{ITEMS - 1:03d}"

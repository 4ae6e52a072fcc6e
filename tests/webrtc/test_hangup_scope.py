"""A call is hung up by the key that started it, or by an API key (issue 17, defect 5).

Any ephemeral key used to end any call (``POST …/calls/{id}/hangup`` → 200).
"""

from __future__ import annotations

import httpx
import pytest

from rtgate.testing.server import ServerHandle

from .peer import BrowserPeer

pytestmark = pytest.mark.e2e

API_KEY = {"Authorization": "Bearer sk-test"}


async def _key(client: httpx.AsyncClient, instructions: str) -> str:
    minted = await client.post("/v1/realtime/client_secrets", headers=API_KEY, json={
        "session": {"type": "realtime", "model": "gpt-realtime", "instructions": instructions}})
    assert minted.status_code == 200, minted.text
    return str(minted.json()["value"])


async def _call(client: httpx.AsyncClient, key: str, peer: BrowserPeer) -> str:
    created = await client.post("/v1/realtime/calls", content=await peer.offer(), headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/sdp"})
    assert created.status_code == 201, created.text
    return created.headers["Location"].rsplit("/", 1)[-1]


async def test_only_the_calls_own_key_or_an_api_key_hangs_it_up(server: ServerHandle) -> None:
    peers = [BrowserPeer(), BrowserPeer()]
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as client:
            mine, other = await _key(client, "caller"), await _key(client, "someone else")
            call = await _call(client, mine, peers[0])
            hangup = f"/v1/realtime/calls/{call}/hangup"
            refused = await client.post(hangup, headers={"Authorization": f"Bearer {other}"})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "invalid_api_key"
            own = await client.post(hangup, headers={"Authorization": f"Bearer {mine}"})
            assert own.status_code == 200
            second = await _call(client, mine, peers[1])
            by_api_key = await client.post(f"/v1/realtime/calls/{second}/hangup", headers=API_KEY)
            assert by_api_key.status_code == 200
    finally:
        for peer in peers:
            await peer.close()

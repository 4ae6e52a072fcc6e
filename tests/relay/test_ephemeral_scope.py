"""An ephemeral key reaches its own model only (issue 17, defect 4).

The gateway serves ``rtgate-local`` itself and relays ``gpt-realtime`` to an upstream. A
key minted for one must not open a session of the other, and a key cannot be minted for
a model that routes nowhere.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import CLIENT_KEY, PROMPT_S, Relay, relay_until_closed

pytestmark = pytest.mark.e2e

LOCAL, RELAYED = "rtgate-local", "gpt-realtime"


async def _mint(relay: Relay, session: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=relay.gateway.http_url) as client:
        return await client.post("/v1/realtime/client_secrets", json={"session": session},
                                 headers={"Authorization": f"Bearer {CLIENT_KEY}"})


async def _key(relay: Relay, model: str) -> str:
    minted = await _mint(relay, {"type": "realtime", "model": model})
    assert minted.status_code == 200, minted.text
    return str(minted.json()["value"])


@pytest.mark.parametrize(("minted_for", "asked_for"), [(LOCAL, RELAYED), (RELAYED, LOCAL)])
async def test_a_key_for_one_model_cannot_open_another(
    relay: Relay, minted_for: str, asked_for: str
) -> None:
    outcome = await relay_until_closed(relay.gateway, asked_for, key=await _key(relay, minted_for))
    error = outcome.error()
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_model", "model")
    assert outcome.close_code == 4000
    assert not any(e["type"] == "session.created" for e in outcome.events)


async def _first_event(relay: Relay, model: str, key: str) -> dict[str, Any]:
    query = f"?model={model}" if model else ""
    async with asyncio.timeout(PROMPT_S), connect(
        f"{relay.gateway.ws_url}/v1/realtime{query}", compression=None, proxy=None,
        additional_headers={"Authorization": f"Bearer {key}"},
    ) as ws:
        return dict(json.loads(await ws.recv()))


@pytest.mark.parametrize("model", [LOCAL, RELAYED])
async def test_a_key_opens_its_own_model_named_or_not(relay: Relay, model: str) -> None:
    key = await _key(relay, model)
    for asked in (model, ""):
        created = await _first_event(relay, asked, key)
        assert created["type"] == "session.created", created
        assert created["session"]["model"] == model


async def test_minting_a_key_for_an_unknown_model_is_refused_with_the_clouds_400(
    relay: Relay,
) -> None:
    minted = await _mint(relay, {"type": "realtime", "model": "no-such-model"})
    assert minted.status_code == 400
    assert minted.json()["error"]["code"] == "invalid_model"
    assert minted.json()["error"]["param"] == "session.model"

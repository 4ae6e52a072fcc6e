"""Ephemeral keys (SPEC §1.2, §12): minting with the official SDK, using, expiring, sharing."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import AsyncAzureOpenAI
from openai.types.realtime import ClientSecretCreateResponse

from rtgate.server.ephemeral import EphemeralKeyStore, SessionTooLarge, derive_secret
from rtgate.testing.server import ServerHandle

from .conftest import Events, assert_error, client_for

pytestmark = pytest.mark.e2e

BOUND = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are a pirate.",
    "output_modalities": ["text"],
    "audio": {"output": {"voice": "marin"}, "input": {"turn_detection": None}},
}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- the key store


def test_key_round_trips_the_bound_session() -> None:
    """check() returns the session that mint() bound, explicit nulls included."""
    store = EphemeralKeyStore(b"k" * 32, clock=Clock(1000.0))
    key, expires_at = store.mint(BOUND, 60)
    assert key.startswith("ek_") and expires_at == 1060
    grant = store.check(key)
    assert grant is not None and grant.ephemeral and grant.session == BOUND


def test_key_expires_at_expires_at() -> None:
    """A key is valid while now < expires_at and refused from then on."""
    clock = Clock(1000.0)
    store = EphemeralKeyStore(b"k" * 32, clock=clock)
    key, expires_at = store.mint(BOUND, 10)
    clock.now = expires_at - 0.001
    assert store.check(key) is not None
    clock.now = expires_at
    assert store.check(key) is None


def test_tampered_truncated_or_foreign_keys_are_refused() -> None:
    """Any change to a key, or a key signed with another secret, is refused."""
    store = EphemeralKeyStore(b"k" * 32, clock=Clock(1000.0))
    key, _ = store.mint(BOUND, 60)
    flipped = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    for bad in (flipped, key[:-2], key + "AA", "ek_", "ek_!!!", "sk-test", key.replace("ek_", "")):
        assert store.check(bad) is None, bad
    other = EphemeralKeyStore(b"x" * 32, clock=Clock(1000.0))
    assert other.check(key) is None


def test_session_too_large_for_a_key_is_refused_at_mint() -> None:
    """The compressed session config is capped so keys fit in a header."""
    store = EphemeralKeyStore(b"k" * 32, max_session_bytes=256)
    with pytest.raises(SessionTooLarge, match="at most 256"):
        store.mint({"type": "realtime", "instructions": os.urandom(400).hex()}, 60)


# --------------------------------------------------------------------------- the REST route


async def test_sdk_mints_a_key_that_opens_a_session_with_the_bound_config(
    server: ServerHandle,
) -> None:
    """client_secrets.create → ek_ key → WebSocket session starts with the bound config."""
    secret = await client_for(server).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120}, session=BOUND  # type: ignore[arg-type]
    )
    raw = secret.model_dump(mode="json")
    ClientSecretCreateResponse.model_validate(raw)
    assert secret.value.startswith("ek_")
    assert abs(secret.expires_at - (time.time() + 120)) < 5
    session = raw["session"]
    assert session["object"] == "realtime.session" and session["id"].startswith("sess_")
    assert session["expires_at"] == 0
    assert session["client_secret"] == {"value": secret.value, "expires_at": secret.expires_at}
    assert session["instructions"] == "You are a pirate."
    assert session["audio"]["output"]["voice"] == "marin"
    for _ in range(2):  # several sessions per key
        async with client_for(server, secret.value).realtime.connect(model="gpt-realtime") as conn:
            created = (await Events(conn).expect("session.created"))["session"]
            assert created["instructions"] == "You are a pirate."
            assert created["output_modalities"] == ["text"]
            assert created["audio"]["output"]["voice"] == "marin"
            assert created["audio"]["input"]["turn_detection"] is None


async def test_default_ttl_is_600_seconds(server: ServerHandle) -> None:
    """With no expires_after the key lives 600 s."""
    secret = await client_for(server).realtime.client_secrets.create()
    assert abs(secret.expires_at - (time.time() + 600)) < 5
    assert secret.session.type == "realtime"


async def test_azure_client_path_mints_keys(server: ServerHandle) -> None:
    """AzureOpenAI posts /openai/realtime/client_secrets?api-version=… with an api-key header."""
    azure = AsyncAzureOpenAI(azure_endpoint=server.http_url, api_key="sk-test",
                             api_version="2025-08-28")
    secret = await azure.realtime.client_secrets.create(session={"type": "transcription"})
    assert secret.value.startswith("ek_")
    assert secret.session.type == "transcription"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"expires_after": {"anchor": "created_at", "seconds": 9}}, "integer_below_min_value",
         "expires_after.seconds"),
        ({"expires_after": {"anchor": "created_at", "seconds": 7201}}, "integer_above_max_value",
         "expires_after.seconds"),
        ({"expires_after": {"anchor": "now", "seconds": 60}}, "invalid_value",
         "expires_after.anchor"),
        ({"session": {"type": "realtime", "audio": {"output": {"speed": 1.6}}}},
         "decimal_above_max_value", "session.audio.output.speed"),
        ({"session": {"type": "nope"}}, "invalid_value", "session.type"),
        ({"sessions": {}}, "unknown_parameter", "sessions"),
    ],
)
async def test_bad_requests_get_400_with_the_cloud_error_body(
    server: ServerHandle, body: dict[str, object], code: str, param: str
) -> None:
    """TTL out of 10-7200, another anchor, or an invalid session → 400 naming the parameter."""
    client = client_for(server)
    with pytest.raises(openai.BadRequestError) as info:
        await client.post("/realtime/client_secrets", body=body, cast_to=object)
    error = info.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")


async def test_minting_needs_a_standard_key(server: ServerHandle) -> None:
    """A wrong key, or an ephemeral key, cannot mint keys (401)."""
    with pytest.raises(openai.AuthenticationError):
        await client_for(server, "sk-wrong").realtime.client_secrets.create()
    secret = await client_for(server).realtime.client_secrets.create()
    with pytest.raises(openai.AuthenticationError):
        await client_for(server, secret.value).realtime.client_secrets.create()


async def test_expired_and_tampered_keys_are_refused_like_a_bad_key(server: ServerHandle) -> None:
    """A key past expires_at (minted by a store whose clock is in the past) gets invalid_api_key."""
    past = EphemeralKeyStore(derive_secret(["sk-test"]) or b"", clock=Clock(time.time() - 3600))
    expired, _ = past.mint({"type": "realtime"}, 600)
    fresh = (await client_for(server).realtime.client_secrets.create()).value
    tampered = fresh[:-3] + ("A" if fresh[-3] != "A" else "B") + fresh[-2:]
    for key in (expired, tampered, "ek_68af296e8e408191a1120ab6383263c2"):
        async with client_for(server, key).realtime.connect(model="gpt-realtime") as conn:
            assert_error(await Events(conn).next(), "invalid_api_key")


# --------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _rtgate_serve(env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtgate", "serve", "--pipeline", "builtin", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rtgate serve exited: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "rtgate serve did not start in 60 s"
            time.sleep(0.1)  # polling a network condition with a deadline
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def two_processes() -> Iterator[tuple[str, str]]:
    env = {**os.environ, "RTGATE_API_KEYS": "sk-a", "RTGATE_EPHEMERAL_SECRET": "deployment secret"}
    with _rtgate_serve(env) as a, _rtgate_serve(env) as b:
        yield a, b


async def test_a_key_minted_on_one_process_opens_a_session_on_another(
    two_processes: tuple[str, str],
) -> None:
    """Two `rtgate serve` processes with the same secret: mint on A, connect on B."""
    a, b = two_processes
    minter = openai.AsyncOpenAI(base_url=f"{a}/v1", api_key="sk-a")
    secret = await minter.realtime.client_secrets.create(session=BOUND)  # type: ignore[arg-type]
    other = openai.AsyncOpenAI(base_url=f"{b}/v1", api_key=secret.value)
    async with other.realtime.connect(model="gpt-realtime") as conn:
        created = (await Events(conn).expect("session.created"))["session"]
        assert created["instructions"] == "You are a pirate."

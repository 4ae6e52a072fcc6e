"""Per-key accounts, refusals and usage (server/keys.py), without sockets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rtgate.cluster import LocalStore, Refused, new_member
from rtgate.core.limits import CoreLimits
from rtgate.core.session import Session
from rtgate.server.auth import Authenticator, Credential, key_id
from rtgate.server.ephemeral import EphemeralKeyStore
from rtgate.server.keys import account_of, admit, record_session, refusal
from rtgate.server.settings import Settings


def test_a_standard_key_is_its_own_account_and_its_ephemeral_keys_count_under_it() -> None:
    store = EphemeralKeyStore(b"s" * 32, clock=lambda: 1000.0)
    auth = Authenticator(["sk-one"], ephemeral=store)
    grant = auth.check(Credential("sk-one", "bearer"))
    assert grant is not None and grant.account == key_id("sk-one")
    key, _ = store.mint({"type": "realtime", "model": "gpt-realtime"}, 60, account=grant.account)
    minted = auth.check(Credential(key, "bearer"))
    assert minted is not None and minted.ephemeral
    assert minted.account == key_id("sk-one")
    assert "rtgate.account" not in (minted.session or {})  # not part of the session config
    assert account_of(minted, Credential(key, "bearer")) == key_id("sk-one")


def test_refusals_have_the_clouds_rate_limit_shape() -> None:
    rate = refusal(Refused("rate", 10, 12.2)).to_wire()
    assert rate["type"] == "rate_limit_error" and rate["code"] == "rate_limit_exceeded"
    assert "10 sessions per minute" in rate["message"] and "13 s" in rate["message"]
    concurrent = refusal(Refused("concurrent", 2, 1.0)).to_wire()
    assert "2 sessions at once" in concurrent["message"]


def test_admit_enforces_the_settings_and_record_session_adds_usage() -> None:
    cluster = LocalStore(new_member("http://127.0.0.1:1"), clock=lambda: 0.0)
    refused = SimpleNamespace(inc=lambda *labels: counted.append(labels))
    counted: list[tuple[str, ...]] = []
    state = SimpleNamespace(node=SimpleNamespace(cluster=cluster), settings=Settings(key_max_sessions=1),
                            metrics=SimpleNamespace(sessions_refused=refused))

    async def run() -> None:
        first = await admit(state, "acct")
        assert not isinstance(first, Refused)
        second = await admit(state, "acct")
        assert isinstance(second, Refused) and second.reason == "concurrent"
        assert counted == [("key_limit",)]
        await first.release()
        assert not isinstance(await admit(state, "acct"), Refused)
        session = Session(session_id="sess_1", kind="realtime", model="gpt-realtime", config=None,
                          limits=CoreLimits(), now=0.0)
        session.buffer.append(b"\x00" * 48_000)  # one second of 24 kHz PCM16
        session.totals.input_tokens, session.totals.output_tokens = 5, 7
        record_session(state, "acct", session)
        record_session(state, "acct", None)  # a relayed session: counted, no audio
        usage = (await cluster.usage())["acct"]
        assert usage["sessions"] == 2 and usage["audio_in_s"] == 1.0
        assert usage["input_tokens"] == 5 and usage["output_tokens"] == 7

    asyncio.run(run())

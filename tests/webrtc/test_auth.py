"""Ephemeral keys are checked on their own terms, also when the server accepts any key."""

from __future__ import annotations

import time

from rtgate.server.auth import Authenticator, Credential
from rtgate.server.ephemeral import EphemeralKeyStore

SESSION = {"type": "realtime", "instructions": "Be brief."}


def open_mode(now: float) -> tuple[Authenticator, EphemeralKeyStore]:
    store = EphemeralKeyStore(b"k" * 32, clock=lambda: now)
    return Authenticator((), ephemeral=store), store


def test_open_mode_accepts_a_valid_ephemeral_key_with_its_bound_session() -> None:
    """No API keys configured: a live ek_ key grants its bound session."""
    auth, store = open_mode(time.time())
    key, _ = store.mint(SESSION, 60)
    grant = auth.check(Credential(key, "bearer"))
    assert grant is not None and grant.ephemeral
    assert grant.session is not None and grant.session["instructions"] == "Be brief."


def test_open_mode_refuses_an_expired_ephemeral_key() -> None:
    """No API keys configured: an ek_ key past expires_at is refused, not let through."""
    minted_at = time.time() - 3600
    _, old_store = open_mode(minted_at)
    expired, _ = old_store.mint(SESSION, 60)
    auth, _ = open_mode(time.time())
    assert auth.check(Credential(expired, "bearer")) is None


def test_open_mode_refuses_an_altered_or_foreign_ephemeral_key() -> None:
    """A tampered ek_ key, or one signed by another deployment, is refused in open mode."""
    auth, store = open_mode(time.time())
    key, _ = store.mint(SESSION, 60)
    tampered = key[:-2] + ("A" if key[-2] != "A" else "B") + key[-1]
    foreign, _ = EphemeralKeyStore(b"x" * 32).mint(SESSION, 60)
    for bad in (tampered, foreign, "ek_not-a-key"):
        assert auth.check(Credential(bad, "bearer")) is None, bad


def test_open_mode_still_accepts_any_other_key() -> None:
    """Any non-ek_ key opens a session when no API keys are configured."""
    auth, _ = open_mode(time.time())
    grant = auth.check(Credential("anything", "bearer"))
    assert grant is not None and not grant.ephemeral

"""Ephemeral keys (``ek_…``, docs/protocol.md, Client secrets): signed, self-contained,
valid on every process.

A key is ``ek_`` + base64url(``version ‖ expires_at ‖ zlib(session JSON) ‖ tag``), where
``tag`` is the first 16 bytes of HMAC-SHA256(secret, ``"rtgate-ek" ‖ version ‖ expires_at ‖
zlib(session JSON)``). Any process that holds the same secret accepts the key — no shared
store is needed — and the session config bound to the key travels inside it. Consequences:

* the key is longer than the cloud's ``ek_<32 hex>`` (clients treat it as opaque); the
  compressed session config is capped at :data:`DEFAULT_MAX_SESSION_BYTES` so the key fits
  in an ``Authorization`` header, a subprotocol or a query string;
* a key cannot be revoked before it expires (TTLs are 10-7200 s); rotating the secret
  revokes every outstanding key at once;
* the secret comes from ``RTGATE_EPHEMERAL_SECRET`` or, when unset, is derived from the
  configured API keys (every process of a deployment shares those). With neither (open
  local development) a random per-process secret is used and keys work on this process only.

A key is accepted while ``now < expires_at``. Expired, unknown, truncated or tampered keys
are refused exactly like a wrong API key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from .auth import Grant
from .scope import key_id

log = logging.getLogger("rtgate.ephemeral")

Clock = Callable[[], float]

KEY_PREFIX = "ek_"
SECRET_ENV = "RTGATE_EPHEMERAL_SECRET"  # noqa: S105 (a variable name)
DEFAULT_MAX_SESSION_BYTES = 6 * 1024
"""Compressed session config carried in one key, in bytes (the key is ~4/3 of it + 32)."""
MAX_SESSION_JSON_BYTES = 256 * 1024
"""Decompressed session config accepted from a key, in bytes (a bound on inflation)."""

ACCOUNT_FIELD = "rtgate.account"
"""Where a key's payload carries the minting key's account (no session field has a dot)."""

_VERSION = 1
_HEADER = struct.Struct(">BQ")  # version, expires_at (unix seconds)
_TAG_BYTES = 16
_DOMAIN = b"rtgate-ek"


class SessionTooLarge(ValueError):
    """The session config does not fit in a key."""


def derive_secret(api_keys: Sequence[str]) -> bytes | None:
    """A secret shared by every process configured with the same API keys."""
    if not api_keys:
        return None
    material = b"\x00".join(sorted(k.encode() for k in api_keys))
    return hmac.new(b"rtgate ephemeral key secret v1", material, hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class EphemeralKeyStore:
    """Mints and checks signed ephemeral keys; see the module docstring."""

    def __init__(
        self,
        secret: bytes,
        *,
        clock: Clock = time.time,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the ephemeral key secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock
        self.max_session_bytes = max_session_bytes

    @classmethod
    def for_deployment(
        cls,
        api_keys: Sequence[str],
        environ: Mapping[str, str] | None = None,
        *,
        clock: Clock = time.time,
    ) -> EphemeralKeyStore:
        """The store for a server: secret from ``RTGATE_EPHEMERAL_SECRET``, else the API keys."""
        env = os.environ if environ is None else environ
        configured = env.get(SECRET_ENV, "").strip()
        if configured:
            secret = hashlib.sha256(configured.encode()).digest()
        else:
            derived = derive_secret(api_keys)
            if derived is None:
                log.warning(
                    "no API keys and no %s: ephemeral keys are valid on this process only",
                    SECRET_ENV,
                )
                derived = secrets.token_bytes(32)
            secret = derived
        return cls(secret, clock=clock)

    def _tag(self, signed: bytes) -> bytes:
        return hmac.new(self._secret, _DOMAIN + signed, hashlib.sha256).digest()[:_TAG_BYTES]

    def mint(self, session: dict[str, Any], ttl_s: int, account: str | None = None) -> tuple[str, int]:
        """Return ``(key, expires_at)`` for a key bound to ``session`` (already validated)
        and, when given, to the ``account`` of the standard key that minted it (its
        sessions count under that account, server/keys.py).

        Raises :class:`SessionTooLarge` when the compressed config exceeds the cap.
        """
        expires_at = int(self._clock()) + int(ttl_s)
        payload = session if account is None else {**session, ACCOUNT_FIELD: account}
        body = zlib.compress(orjson.dumps(payload), 9)
        if len(body) > self.max_session_bytes:
            raise SessionTooLarge(
                f"The session config is too large to bind to an ephemeral key: {len(body)} bytes "
                f"compressed, at most {self.max_session_bytes}. Shorten 'instructions' or "
                "'tools', or send them later with session.update."
            )
        signed = _HEADER.pack(_VERSION, expires_at) + body
        return KEY_PREFIX + _b64encode(signed + self._tag(signed)), expires_at

    def check(self, key: str) -> Grant | None:
        """The grant for a valid, unexpired key; ``None`` for anything else."""
        if not key.startswith(KEY_PREFIX):
            return None
        try:
            raw = _b64decode(key[len(KEY_PREFIX) :])
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _HEADER.size + _TAG_BYTES:
            return None
        signed, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(signed)):
            return None
        version, expires_at = _HEADER.unpack_from(signed)
        if version != _VERSION or self._clock() >= expires_at:
            return None
        try:
            inflater = zlib.decompressobj()
            text = inflater.decompress(signed[_HEADER.size :], MAX_SESSION_JSON_BYTES)
            if inflater.unconsumed_tail:
                return None
            session = orjson.loads(text)
        except (zlib.error, orjson.JSONDecodeError):
            return None
        if not isinstance(session, dict):
            return None
        account = session.pop(ACCOUNT_FIELD, None)
        return Grant(ephemeral=True, session=session, key_id=key_id(key),
                     account=account if isinstance(account, str) else None)

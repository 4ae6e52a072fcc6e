"""Authentication of Realtime requests (docs/protocol.md, Handshake and authentication)
and secret redaction for logs.

Credentials are read from, in order: ``Authorization: Bearer``, the ``api-key`` header,
the ``openai-insecure-api-key.<key>`` subprotocol, and the ``api-key`` query parameter.
Keys are compared in constant time against every configured key. Ephemeral keys
(``ek_…``) are checked by the key store that minted them — also in open mode (no keys
configured, any other key accepted): an expired, altered or foreign ``ek_`` key is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol.dialects import INSECURE_KEY_SUBPROTOCOL_PREFIX

log = logging.getLogger("rtgate.auth")


@dataclass(frozen=True, slots=True)
class Credential:
    value: str
    source: str  # "bearer" | "api-key-header" | "subprotocol" | "api-key-query"


def extract_credential(
    headers: Mapping[str, str], query: Mapping[str, str], subprotocols: Sequence[str]
) -> Credential | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return Credential(auth[7:].strip(), "bearer")
    if headers.get("api-key"):
        return Credential(headers["api-key"].strip(), "api-key-header")
    for proto in subprotocols:
        if proto.startswith(INSECURE_KEY_SUBPROTOCOL_PREFIX):
            return Credential(proto[len(INSECURE_KEY_SUBPROTOCOL_PREFIX) :], "subprotocol")
    if query.get("api-key"):
        return Credential(query["api-key"], "api-key-query")
    return None


def key_id(key: str) -> str:
    """A stable, non-secret identity of a key: an ephemeral key's (its calls remember
    it), or a standard key's (the account its sessions count under, server/keys.py)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Grant:
    """A successful authentication; ``session`` is the config bound to an ephemeral key,
    ``key_id`` that key's identity (server/scope.py)."""

    ephemeral: bool = False
    session: dict[str, Any] | None = None
    key_id: str | None = None
    account: str | None = None
    """The standard key a session counts under (server/keys.py): the key itself, or the
    one that minted the ephemeral key; ``None`` where unknown."""


class EphemeralKeys(Protocol):
    def check(self, key: str) -> Grant | None: ...


class Authenticator:
    """Checks credentials against configured keys and, if given, an ephemeral key store."""

    def __init__(self, api_keys: Sequence[str], ephemeral: EphemeralKeys | None = None) -> None:
        self._keys = [k.encode() for k in api_keys]
        self.ephemeral = ephemeral
        self._warned = False

    @property
    def open_access(self) -> bool:
        return not self._keys

    def check(self, credential: Credential | None) -> Grant | None:
        """Return a grant, or ``None`` when the credential is missing or wrong."""
        if credential is None:
            return None
        if credential.value.startswith("ek_") and self.ephemeral is not None:
            # An ephemeral key stands or falls by its own signature and expiry, even in
            # open mode: accepting an expired key there would hide the expiry from the
            # developer until the first deployment with keys.
            return self.ephemeral.check(credential.value)
        if self.open_access:
            if not self._warned:
                log.warning("no API keys configured: accepting any key (local development mode)")
                self._warned = True
            return Grant(account=key_id(credential.value))
        candidate = credential.value.encode()
        ok = False
        for key in self._keys:
            # Compare against every key so timing does not reveal which one matched.
            ok |= hmac.compare_digest(candidate, key)
        return Grant(account=key_id(credential.value)) if ok else None


_SECRET_PATTERNS = [
    (re.compile(r"(api-key=)[^&\s\"']+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(openai-insecure-api-key\.)[^,\s\"']+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"\b(ek|sk)[-_][A-Za-z0-9_\-]{6,}"), r"\1_***"),
]


def redact(text: str) -> str:
    """Mask API keys in a log line: query keys, subprotocol keys, bearer tokens."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record (uvicorn logs request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to rtgate's and uvicorn's loggers and handlers."""
    flt = RedactingFilter()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "rtgate", "websockets"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(flt)

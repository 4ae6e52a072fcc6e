"""Digest authentication of incoming INVITEs (RFC 3261 §22, RFC 7616 ``qop=auth``).

With ``sip_digest_username`` and ``sip_digest_password`` set, a new INVITE without valid
credentials gets ``401 Unauthorized`` with a challenge; the trunk re-sends it with an
``Authorization`` header. The response hash is recomputed with aiosipua's own digest code
(:func:`aiosipua.auth.build_credentials`, the client side of the same exchange) and
compared in constant time.

Nonces are stateless: ``<unix time>.<HMAC of it under a per-process key>``, valid for
``NONCE_TTL_S``. A nonce can be replayed within that window (nonce counts are not
tracked); the source allow-list still applies on top.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiosipua import SipDigestAuth
from aiosipua.auth import build_credentials
from aiosipua.headers import AuthChallenge, parse_auth
from aiosipua.message import SipRequest

REALM = "rtgate"
NONCE_TTL_S = 300


class DigestGuard:
    """Checks INVITE credentials against one username and password."""

    def __init__(self, username: str, password: str) -> None:
        self._auth = SipDigestAuth(username, password)
        self._key = secrets.token_bytes(32)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def nonce(self, now: float | None = None) -> str:
        stamp = str(int(time.time() if now is None else now))
        return f"{stamp}.{self._sign(stamp)}"

    def _nonce_fresh(self, nonce: str, now: float) -> bool:
        stamp, _, tag = nonce.partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(tag, self._sign(stamp)):
            return False
        return 0 <= now - int(stamp) <= NONCE_TTL_S

    def challenge(self, now: float | None = None) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        return f'Digest realm="{REALM}", nonce="{self.nonce(now)}", qop="auth", algorithm=MD5'

    def allows(self, request: SipRequest, now: float | None = None) -> bool:
        """Whether ``request`` carries valid credentials for a fresh nonce of ours."""
        raw = request.get_header("authorization")
        if not raw:
            return False
        try:
            credentials = parse_auth(raw)
        except Exception:
            return False
        params = credentials.params
        nonce, uri = params.get("nonce", ""), params.get("uri", "")
        if (credentials.scheme.lower() != "digest" or params.get("realm") != REALM
                or not hmac.compare_digest(params.get("username", ""), self._auth.username)
                or not self._nonce_fresh(nonce, time.time() if now is None else now)):
            return False
        qop = params.get("qop")
        challenge = AuthChallenge("Digest", {"realm": REALM, "nonce": nonce, "algorithm": "MD5",
                                             **({"qop": "auth"} if qop else {})})
        try:
            nonce_count = int(params.get("nc", "1"), 16)
        except ValueError:
            return False
        expected = build_credentials(self._auth, challenge, request.method, uri,
                                     nonce_count=nonce_count, cnonce=params.get("cnonce"))
        return expected is not None and hmac.compare_digest(
            expected.params["response"], params.get("response", ""))

"""Start-up checks of the SIP settings (``rtgate serve`` stops with the message)."""

from __future__ import annotations

import ipaddress
from typing import Any


def check_sip_settings(settings: Any) -> None:
    """Raise ``ValueError`` naming the first bad SIP setting."""
    if not 1 <= settings.sip.port <= 65535:
        raise ValueError(f"sip_port: expected a port 1-65535 or 0 (no SIP), got {settings.sip.port}")
    for source in settings.sip.allowed_sources:
        try:
            ipaddress.ip_network(source.strip(), strict=False)
        except ValueError:
            raise ValueError(f"sip_allowed_sources: {source!r} is not an address or CIDR "
                             "(e.g. 203.0.113.0/24)") from None
    for url in settings.webhooks.urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_urls: {url!r} is not an http(s):// URL")
    if settings.webhooks.urls and not settings.webhooks.secret:
        raise ValueError("webhook_secret: required with webhook_urls (the 'whsec_...' secret "
                         "receivers verify the signature with)")
    if settings.webhooks.secret:
        from .webhooks import check_secret

        check_secret(settings.webhooks.secret)
    low, high = settings.sip.rtp_port_min, settings.sip.rtp_port_max
    if not (1024 <= low < high <= 65535):
        raise ValueError(f"sip_rtp_port_min/max: expected 1024 <= min < max <= 65535, got {low}-{high}")
    if settings.sip.answer_timeout_s <= 0 or settings.sip.media_timeout_s <= 0:
        raise ValueError("sip_answer_timeout_s and sip_media_timeout_s must be positive")
    if bool(settings.sip.digest_username) != bool(settings.sip.digest_password):
        raise ValueError("sip_digest_username/sip_digest_password: set both or neither")
    if settings.sip.tls_port:
        check_tls(settings)
    if not 1 <= settings.sip.jitter_frames <= 15:
        raise ValueError(f"sip_jitter_frames: expected 1-15, got {settings.sip.jitter_frames}")


def check_tls(settings: Any) -> None:
    """The TLS listener's port, certificate and key (loaded once here, so a bad file stops
    ``rtgate serve`` at start-up instead of failing each handshake)."""
    import ssl

    if not 1 <= settings.sip.tls_port <= 65535 or settings.sip.tls_port == settings.sip.port:
        raise ValueError("sip_tls_port: expected a port 1-65535 other than sip_port, "
                         f"got {settings.sip.tls_port}")
    if not (settings.sip.tls_certfile and settings.sip.tls_keyfile):
        raise ValueError("sip_tls_certfile/sip_tls_keyfile: required with sip_tls_port (PEM files)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.sip.tls_certfile, settings.sip.tls_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"sip_tls_certfile/sip_tls_keyfile: cannot load them ({exc})") from None

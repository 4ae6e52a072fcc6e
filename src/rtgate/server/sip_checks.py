"""Start-up checks of the SIP settings (``rtgate serve`` stops with the message)."""

from __future__ import annotations

import ipaddress
from typing import Any


def check_sip_settings(settings: Any) -> None:
    """Raise ``ValueError`` naming the first bad SIP setting."""
    if not 1 <= settings.sip_port <= 65535:
        raise ValueError(f"sip_port: expected a port 1-65535 or 0 (no SIP), got {settings.sip_port}")
    for source in settings.sip_allowed_sources:
        try:
            ipaddress.ip_network(source.strip(), strict=False)
        except ValueError:
            raise ValueError(f"sip_allowed_sources: {source!r} is not an address or CIDR "
                             "(e.g. 203.0.113.0/24)") from None
    for url in settings.webhook_urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_urls: {url!r} is not an http(s):// URL")
    if settings.webhook_urls and not settings.webhook_secret:
        raise ValueError("webhook_secret: required with webhook_urls (the 'whsec_...' secret "
                         "receivers verify the signature with)")
    if settings.webhook_secret:
        from .webhooks import check_secret

        check_secret(settings.webhook_secret)
    low, high = settings.sip_rtp_port_min, settings.sip_rtp_port_max
    if not (1024 <= low < high <= 65535):
        raise ValueError(f"sip_rtp_port_min/max: expected 1024 <= min < max <= 65535, got {low}-{high}")
    if settings.sip_answer_timeout_s <= 0 or settings.sip_media_timeout_s <= 0:
        raise ValueError("sip_answer_timeout_s and sip_media_timeout_s must be positive")
    if bool(settings.sip_digest_username) != bool(settings.sip_digest_password):
        raise ValueError("sip_digest_username/sip_digest_password: set both or neither")
    if not 1 <= settings.sip_jitter_frames <= 15:
        raise ValueError(f"sip_jitter_frames: expected 1-15, got {settings.sip_jitter_frames}")

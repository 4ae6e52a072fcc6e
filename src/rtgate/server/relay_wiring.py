"""What the server hands the relay (relay/): its limits from the settings, and whether a
session may be spliced. The relay reads neither the server's settings nor its state."""

from __future__ import annotations

from ..relay.config import UpstreamConfig
from ..relay.upstream import RelayLimits
from .routing import ModelRouter
from .settings import Settings


def relay_limits(settings: Settings) -> RelayLimits:
    """The relay limits from the ``relay_*`` settings, the largest frame, the send deadline
    and the client keepalive."""
    return RelayLimits(
        connect_timeout_s=settings.relay.connect_timeout_s,
        ping_interval_s=settings.relay.ping_interval_s,
        ping_timeout_s=settings.relay.ping_timeout_s,
        close_timeout_s=settings.relay.close_timeout_s,
        answer_deadline_s=settings.relay.answer_deadline_s,
        max_frame_bytes=settings.decode.max_frame_bytes,
        send_deadline_s=settings.outbound.send_deadline_s,
        client_ping_interval_s=settings.websocket.ping_interval_s or 0.0,
        client_ping_timeout_s=settings.websocket.ping_timeout_s or 0.0,
    )


def may_splice(settings: Settings, router: ModelRouter, *, preview: bool) -> bool:
    """Whether a new WebSocket may become a spliced GA relay: ``relay_splice`` on, a GA
    client, and some route to an upstream (arming the hook costs a local session nothing,
    but there is no point without one)."""
    if preview or not settings.relay.splice:
        return False
    return any(isinstance(target, UpstreamConfig) for target in router.routes.values())

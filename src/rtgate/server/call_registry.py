"""The live calls of this process (WebRTC and accepted SIP calls) and their ids: the
registry that the call routes, the sideband and shutdown share (server/calls.py,
server/sip_routes.py, server/state.py), kept apart from the routes so that the server's
state can name it without importing them."""

from __future__ import annotations

import secrets
import weakref
from typing import TYPE_CHECKING, Any

from .. import extras
from .settings import Settings

if TYPE_CHECKING:  # the call transports need the webrtc / sip extras (rtgate.extras)
    from ..transport.sip_call import SipCall
    from ..transport.sip_relay import RelayedSipCall
    from ..transport.webrtc import WebRTCCall, WebRTCSettings


owners: weakref.WeakKeyDictionary[WebRTCCall | SipCall | RelayedSipCall, str | None] = (
    weakref.WeakKeyDictionary())
"""The ephemeral key (``Grant.key_id``) that started each call; ``None``: an API key."""


def webrtc_settings(settings: Settings) -> WebRTCSettings:
    """The transport's view of the server's ``webrtc_*`` settings (needs the webrtc extra)."""
    from ..transport.webrtc import WebRTCSettings

    return WebRTCSettings(
        ice_servers=settings.webrtc.ice_servers,
        turn_username=settings.webrtc.turn_username,
        turn_credential=settings.webrtc.turn_credential,
        ice_connect_timeout_s=settings.webrtc.ice_connect_timeout_s,
        media_timeout_s=settings.webrtc.media_timeout_s,
        max_output_audio_s=settings.webrtc.max_output_audio_s,
        max_pending_events=settings.webrtc.max_pending_events,
        max_inbound_events=settings.webrtc.max_inbound_events,
        max_data_channel_buffer_bytes=settings.webrtc.max_data_channel_buffer_bytes,
        input_jitter_frames=settings.webrtc.input_jitter_frames,
        udp_port_min=settings.webrtc.udp_port_min,
        udp_port_max=settings.webrtc.udp_port_max,
    )


def new_call_id(node: Any = None) -> str:
    """``rtc_`` and 32 hex digits, like the cloud's; the first 8 are the id of the process
    that holds the call (``node.id``), so that a sideband or hangup reaching another
    process of the deployment finds its way here (server/forward.py)."""
    owner = getattr(node, "id", None) or secrets.token_hex(4)
    return f"rtc_{owner}{secrets.token_hex(12)}"


def call_owner(call_id: str) -> str | None:
    """The id of the process that holds ``call_id`` (see :func:`new_call_id`), if well-formed."""
    tag = call_id[4:12]
    if call_id.startswith("rtc_") and len(tag) == 8 and all(c in "0123456789abcdef" for c in tag):
        return tag
    return None


class CallRegistry:
    """The live calls of this process, by id: WebRTC calls and accepted SIP calls
    (server/sip_routes.py), which share the sideband and hangup."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.webrtc = webrtc_settings(settings) if extras.installed("webrtc") else None
        self.calls: dict[str, WebRTCCall | SipCall | RelayedSipCall] = {}

    def get(self, call_id: str) -> WebRTCCall | SipCall | RelayedSipCall | None:
        return self.calls.get(call_id)

    async def aclose(self) -> None:
        for call in list(self.calls.values()):
            await call.aclose("server shutting down")

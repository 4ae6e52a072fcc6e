"""WebRTC settings live in :class:`Settings`: env variables, start-up print, CLI flags."""

from __future__ import annotations

import pytest

from rtgate.cli import main
from rtgate.server.call_registry import webrtc_settings
from rtgate.server.settings import Settings


def test_webrtc_settings_come_from_rtgate_webrtc_env_variables() -> None:
    """RTGATE_WEBRTC_* fill the webrtc_* fields; ICE servers are comma-separated."""
    settings = Settings.from_env({
        "RTGATE_WEBRTC_ICE_SERVERS": "stun:stun.example.org:3478, turn:turn.example.org:3478",
        "RTGATE_WEBRTC_TURN_USERNAME": "rt",
        "RTGATE_WEBRTC_TURN_CREDENTIAL": "s3cret",
        "RTGATE_WEBRTC_MEDIA_TIMEOUT_S": "7.5",
        "RTGATE_WEBRTC_MAX_PENDING_EVENTS": "16",
    })
    assert settings.webrtc.ice_servers == ("stun:stun.example.org:3478", "turn:turn.example.org:3478")
    webrtc = webrtc_settings(settings)
    assert (webrtc.media_timeout_s, webrtc.max_pending_events) == (7.5, 16)
    servers = webrtc.rtc_configuration().iceServers or []
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        ("stun:stun.example.org:3478", None, None),
        ("turn:turn.example.org:3478", "rt", "s3cret"),
    ]


def test_webrtc_settings_are_printed_at_start_up_with_the_credential_masked() -> None:
    """describe() lists every webrtc_* setting; the TURN credential never appears."""
    text = Settings(webrtc_turn_credential="s3cret", webrtc_ice_servers=("stun:h:3478",)).describe()
    for name in ("webrtc_ice_servers", "webrtc_ice_connect_timeout_s", "webrtc_media_timeout_s",
                 "webrtc_max_output_audio_s", "webrtc_max_data_channel_buffer_bytes"):
        assert name in text, name
    assert "s3cret" not in text
    assert "webrtc_turn_credential" in text


def test_serve_help_teaches_the_stun_turn_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """rtgate serve --ice-server (repeatable) and --turn-username; the credential goes by env."""
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--ice-server URL" in out
    assert "--turn-username NAME" in out
    assert "RTGATE_WEBRTC_TURN_CREDENTIAL" in out


async def test_input_jitter_frames_resizes_the_inbound_audio_jitter_buffer() -> None:
    """webrtc_input_jitter_frames sets how many frames aiortc's audio receiver prefetches."""
    from aiortc import RTCPeerConnection

    from rtgate.transport.webrtc import _set_input_jitter

    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        _set_input_jitter(receiver, 1)
        assert receiver._RTCRtpReceiver__jitter_buffer._prefetch == 1  # type: ignore[attr-defined]
        assert webrtc_settings(Settings(webrtc_input_jitter_frames=2)).input_jitter_frames == 2
    finally:
        await pc.close()

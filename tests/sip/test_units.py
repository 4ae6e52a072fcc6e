"""The pure parts of SIP calls: webhook signatures, offers, headers, sources, settings."""

from __future__ import annotations

import time

import pytest
from aiosipua import SipMessage, parse_sdp
from openai import OpenAI

from rtgate.cli import main
from rtgate.server.settings import Settings
from rtgate.server.sip import (
    answer_sdp,
    offer_problem,
    parse_sources,
    sip_headers,
    source_allowed,
    telephone_event_type,
)
from rtgate.server.webhooks import signed_headers
from rtgate.testing.sip_peer import offer_sdp

from .conftest import SECRET


def test_webhook_signature_verifies_with_the_official_sdk() -> None:
    body = b'{"object":"event","id":"evt_1","type":"realtime.call.incoming","created_at":1,' \
           b'"data":{"call_id":"rtc_1","sip_headers":[{"name":"From","value":"<sip:a@b>"}]}}'
    headers = signed_headers(SECRET, "evt_1", body)
    client = OpenAI(api_key="x", base_url="http://127.0.0.1:9")
    event = client.webhooks.unwrap(body, headers, secret=SECRET)
    assert event.type == "realtime.call.incoming"
    assert event.data.call_id == "rtc_1"  # type: ignore[union-attr]
    with pytest.raises(Exception, match="signature"):
        client.webhooks.unwrap(body.replace(b"rtc_1", b"rtc_2"), headers, secret=SECRET)
    with pytest.raises(Exception, match="too old"):
        client.webhooks.unwrap(body, signed_headers(SECRET, "evt_1", body, now=time.time() - 600),
                               secret=SECRET)


@pytest.mark.parametrize(("codecs", "proto", "problem"), [
    ("0 8 101", "RTP/AVP", None),
    ("8", "RTP/AVP", None),
    ("9 18", "RTP/AVP", "no supported codec"),
    ("0", "RTP/SAVP", "RTP/SAVP is not supported"),
])
def test_offer_problems(codecs: str, proto: str, problem: str | None) -> None:
    result = offer_problem(parse_sdp(offer_sdp("127.0.0.1", 4000, codecs=codecs, proto=proto)))
    assert result == problem if problem is None else problem in (result or "")


def test_no_offer_and_refused_audio() -> None:
    assert "no SDP offer" in (offer_problem(None) or "")
    assert "no audio" in (offer_problem(parse_sdp(offer_sdp("127.0.0.1", 0))) or "")


def test_answer_prefers_the_callers_order_and_mirrors_its_dtmf_type() -> None:
    offer = parse_sdp(offer_sdp("127.0.0.1", 4000, codecs="8 0 101").replace("101", "96")
                      .replace("a=rtpmap:96 telephone-event", "a=rtpmap:96 telephone-event/8000\r\na=x:"))
    assert telephone_event_type(offer) == 96
    answer, chosen, dtmf = answer_sdp(offer, "127.0.0.1", 12000)
    assert (chosen, dtmf) == (8, 96)
    assert answer.audio is not None and answer.audio.port == 12000
    assert answer.audio.formats[:2] == ["8", "96"]


def test_webhook_headers_leave_authorization_out() -> None:
    raw = ("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"
           "Via: SIP/2.0/UDP 5.6.7.8;branch=z9hG4bK2\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\n"
           "Call-ID: x\r\nCSeq: 1 INVITE\r\nAuthorization: Digest secret\r\n"
           "Proxy-Authorization: Digest secret\r\nX-Tenant: 7\r\nContent-Length: 0\r\n\r\n")
    headers = sip_headers(SipMessage.parse(raw))  # type: ignore[arg-type]
    assert [h["name"] for h in headers].count("Via") == 2
    assert {"name": "X-Tenant", "value": "7"} in headers
    assert all("secret" not in h["value"] for h in headers)


def test_sources() -> None:
    networks = parse_sources(("127.0.0.0/8", "::1/128", "203.0.113.5"))
    assert source_allowed("127.0.0.9", networks) and source_allowed("::1", networks)
    assert source_allowed("::ffff:127.0.0.1", networks)
    assert source_allowed("203.0.113.5", networks) and not source_allowed("203.0.113.6", networks)
    assert not source_allowed("not-an-ip", networks)


def test_sip_settings_from_env_and_masked_secret() -> None:
    settings = Settings.from_env({
        "RTGATE_SIP_PORT": "5070", "RTGATE_SIP_HOST": "0.0.0.0",
        "RTGATE_WEBHOOK_URLS": "http://a/hook, https://b/hook", "RTGATE_WEBHOOK_SECRET": SECRET,
        "RTGATE_SIP_ALLOWED_SOURCES": "10.0.0.0/8,192.0.2.1",
        "RTGATE_SIP_DIGEST_USERNAME": "trunk", "RTGATE_SIP_DIGEST_PASSWORD": "pa55-w0rd",
    })
    assert settings.sip.port == 5070 and settings.sip.host == "0.0.0.0"
    assert settings.webhooks.urls == ("http://a/hook", "https://b/hook")
    assert settings.sip.allowed_sources == ("10.0.0.0/8", "192.0.2.1")
    text = settings.describe()
    assert "webhook_secret" in text and SECRET not in text and SECRET[6:] not in text
    assert "sip_digest_password" in text and "pa55-w0rd" not in text
    assert Settings().sip.port == 0 and Settings().sip.allowed_sources == ("127.0.0.0/8", "::1/128")


@pytest.mark.parametrize(("changes", "message"), [
    ({"sip_allowed_sources": ("nonsense",)}, "sip_allowed_sources"),
    ({"webhook_urls": ("ftp://x",), "webhook_secret": SECRET}, "webhook_urls"),
    ({"webhook_urls": ("http://x",)}, "webhook_secret: required"),
    ({"webhook_secret": "whsec_***"}, "webhook_secret"),
    ({"sip_rtp_port_min": 30000, "sip_rtp_port_max": 20000}, "sip_rtp_port_min/max"),
    ({"sip_port": 70000}, "sip_port"),
    ({"sip_digest_username": "trunk"}, "set both or neither"),
])
def test_bad_sip_settings_stop_start_up(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**{"sip_port": 5070, **changes})  # type: ignore[arg-type]


def test_serve_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--sip-port PORT", "--sip-host ADDRESS", "--sip-allowed-source CIDR",
                 "--webhook-url URL", "RTGATE_WEBHOOK_SECRET"):
        assert flag in out, flag
    assert main(["serve", "--sip-port", "5070", "--sip-allowed-source", "bogus"]) == 2
    assert "sip_allowed_sources" in capsys.readouterr().err


def test_aiortp_and_aiosipua_internals_we_rely_on_exist() -> None:
    """Guards for an upgrade: the RTP source filter and the UDP protocol override hook in."""
    from aiortp import RTPSession
    from aiosipua.transport import _UdpProtocol

    assert callable(RTPSession._handle_rtp)
    assert callable(_UdpProtocol.connection_made)
    # Relayed calls take undecoded payloads where aiortp decodes (transport/sip_relay.py).
    from aiortp.jitterbuffer import JitterFrame

    assert callable(RTPSession._deliver_audio_frame)
    frame = JitterFrame(b"\xff" * 160, 0, lost=2)
    assert (frame.data, frame.lost) == (b"\xff" * 160, 2)


def test_upstream_session_of_a_relayed_call() -> None:
    """The app's accepted body goes upstream without model, audio in the call's law."""
    from rtgate.server.sip_relay import upstream_session
    from rtgate.transport.sip_relay import g711_format

    body = {"type": "realtime", "model": "relay-x", "instructions": "Hi.",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "server_vad"}},
                      "output": {"voice": "marin"}}}
    session = upstream_session(body, g711_format(8))
    assert session == {"type": "realtime", "instructions": "Hi.", "audio": {
        "input": {"format": {"type": "audio/pcma"}, "turn_detection": {"type": "server_vad"}},
        "output": {"voice": "marin", "format": {"type": "audio/pcma"}}}}
    assert body["audio"]["input"]["format"]["type"] == "audio/pcm"  # type: ignore[index]
    assert upstream_session({"type": "transcription"}, g711_format(0)) == {
        "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}


def test_digest_guard_checks_the_response_the_nonce_and_its_age() -> None:
    from aiosipua import SipDigestAuth
    from aiosipua.auth import build_credentials
    from aiosipua.headers import parse_auth, stringify_auth

    from rtgate.server.sip_auth import NONCE_TTL_S, DigestGuard

    guard = DigestGuard("trunk", "pw")

    def invite(password: str, challenge: str) -> SipMessage:
        creds = build_credentials(SipDigestAuth("trunk", password), parse_auth(challenge),  # type: ignore[arg-type]
                                  "INVITE", "sip:agent@127.0.0.1")
        assert creds is not None
        return SipMessage.parse(
            "INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"
            "From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 2 INVITE\r\n"
            f"Authorization: {stringify_auth(creds)}\r\nContent-Length: 0\r\n\r\n")

    now = time.time()
    assert guard.allows(invite("pw", guard.challenge(now)), now)  # type: ignore[arg-type]
    assert not guard.allows(invite("nope", guard.challenge(now)), now)  # type: ignore[arg-type]
    old = guard.challenge(now - NONCE_TTL_S - 1)
    assert not guard.allows(invite("pw", old), now)  # type: ignore[arg-type]
    forged = guard.challenge(now).replace('nonce="', 'nonce="1')
    assert not guard.allows(invite("pw", forged), now)  # type: ignore[arg-type]
    assert not DigestGuard("trunk", "pw").allows(invite("pw", guard.challenge(now)), now)  # type: ignore[arg-type]

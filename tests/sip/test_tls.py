"""SIP over TLS (``sip_tls_port``): a call set up, answered and hung up on a TLS connection
that verifies the server's certificate; bad TLS settings stop start-up with a message."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from rtgate.testing.server import fake_profiles, running_server
from rtgate.testing.sip_peer import free_sip_port, offer_sdp
from rtgate.testing.webhook_receiver import Receiver, running_receiver

from .conftest import KEY, SECRET, Rig, delivery, sip_settings
from .test_tcp import read_message


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sip.crt", directory / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    receiver = Receiver(SECRET, KEY)
    with running_receiver(receiver) as url:
        settings = sip_settings(url, sip_tls_port=free_sip_port(), sip_tls_certfile=str(cert),
                                sip_tls_keyfile=str(key))
        with running_server(
            settings,
            profiles=fake_profiles(FakeLLM("It is noon."), FakeTTS(ms_per_word=300), FakeSTT("what time is it")),
            vad_factory=FakeVAD,
        ) as handle:
            receiver.base_url = handle.base_url
            yield Rig(handle, receiver), cert


def tls_invite(call_id: str, local: tuple[str, int], sdp: str) -> bytes:
    head = [
        "INVITE sips:agent@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex}",
        "Max-Forwards: 70",
        f"From: <sips:tls@{local[0]}:{local[1]}>;tag={uuid.uuid4().hex[:8]}",
        "To: <sips:agent@127.0.0.1>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sips:tls@{local[0]}:{local[1]}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp.encode())}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + sdp).encode()


async def test_a_call_over_tls_is_answered_and_hung_up(tls_rig: tuple[Rig, Path]) -> None:
    rig, cert = tls_rig
    trust = ssl.create_default_context(cafile=str(cert))  # verifies the certificate and the address
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.settings.sip.tls_port, ssl=trust)
    local = writer.get_extra_info("sockname")
    try:
        writer.write(tls_invite(f"tls-{uuid.uuid4().hex}", local, offer_sdp("127.0.0.1", 40010)))
        statuses = []
        while not statuses or statuses[-1] < 200:
            head, body = await read_message(reader)
            statuses.append(int(head.split()[1]))
        assert statuses == [100, 180, 200]  # accepted by the webhook receiver meanwhile
        assert body.startswith(b"v=0") and b"PCMU/8000" in body
        event, _ = await delivery(rig.receiver)
        client = rig.client()
        await client.realtime.calls.hangup(event.data.call_id)
        head, _ = await read_message(reader)
        while head.startswith("SIP/2.0 200"):  # the 200 OK is not retransmitted on a stream
            head, _ = await read_message(reader)
        assert head.startswith("BYE sip")
        await client.close()
    finally:
        writer.close()


async def test_plain_tcp_on_the_tls_port_gets_no_sip_answer(tls_rig: tuple[Rig, Path]) -> None:
    rig, _ = tls_rig
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.settings.sip.tls_port)
    try:
        writer.write(tls_invite(f"plain-{uuid.uuid4().hex}", writer.get_extra_info("sockname"),
                                offer_sdp("127.0.0.1", 40012)))
        answer = await asyncio.wait_for(reader.read(4096), 10)
        assert not answer.startswith(b"SIP/2.0")  # the TLS layer refused the bytes; no call began
    finally:
        writer.close()
    assert rig.receiver.deliveries.empty()


def test_tls_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    base = {"api_keys": (KEY,), "sip_port": 5060}
    with pytest.raises(ValueError, match="sip_tls_certfile/sip_tls_keyfile: required"):
        Settings(**base, sip_tls_port=5061)
    with pytest.raises(ValueError, match="other than sip_port"):
        Settings(**base, sip_tls_port=5060, sip_tls_certfile=str(cert), sip_tls_keyfile=str(key))
    with pytest.raises(ValueError, match="cannot load them"):
        Settings(**base, sip_tls_port=5061, sip_tls_certfile=str(key), sip_tls_keyfile=str(key))
    assert Settings(**base, sip_tls_port=5061, sip_tls_certfile=str(cert), sip_tls_keyfile=str(key))

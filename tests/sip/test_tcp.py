"""SIP over TCP: the same endpoint port, Content-Length framing, answers on the connection."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from rtgate.testing.sip_peer import offer_sdp

from .conftest import Receiver, Rig, delivery

pytestmark = pytest.mark.asyncio


def tcp_invite(call_id: str, local: tuple[str, int], sdp: str) -> bytes:
    head = [
        "INVITE sip:agent@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/TCP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex}",
        "Max-Forwards: 70",
        f"From: <sip:tcp@{local[0]}:{local[1]};transport=tcp>;tag={uuid.uuid4().hex[:8]}",
        "To: <sip:agent@127.0.0.1>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:tcp@{local[0]}:{local[1]};transport=tcp>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(sdp.encode())}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + sdp).encode()


async def read_message(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    match = re.search(r"(?im)^content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return head, body


async def test_invite_over_tcp_is_answered_and_hung_up(rig: Rig, receiver: Receiver) -> None:
    reader, writer = await asyncio.open_connection(*rig.sip)
    local = writer.get_extra_info("sockname")
    try:
        writer.write(tcp_invite(f"tcp-{uuid.uuid4().hex}", local, offer_sdp("127.0.0.1", 40000, codecs="9")))
        head, _ = await read_message(reader)
        assert head.startswith("SIP/2.0 100")
        head, _ = await read_message(reader)
        assert head.startswith("SIP/2.0 488")

        writer.write(tcp_invite(f"tcp-{uuid.uuid4().hex}", local, offer_sdp("127.0.0.1", 40002)))
        statuses = []
        while not statuses or statuses[-1] < 200:
            head, body = await read_message(reader)
            statuses.append(int(head.split()[1]))
        assert statuses == [100, 180, 200]
        assert body.startswith(b"v=0") and b"PCMU/8000" in body
        event, _ = await delivery(receiver)
        client = rig.client()
        await client.realtime.calls.hangup(event.data.call_id)
        head, _ = await read_message(reader)
        while head.startswith("SIP/2.0 200"):  # the 200 OK is not retransmitted over TCP
            head, _ = await read_message(reader)
        assert head.startswith("BYE sip:")
        await client.close()
    finally:
        writer.close()

"""The frame scanner of the spliced relay (relay/wire.py), against websockets' own framing.

Frames are produced by websockets' sans-I/O protocols (a client masks, a server does
not), cut into chunks at every offset or coalesced, and the scanner must return exactly
the whole frames, byte for byte, with their headers located right.
"""

from __future__ import annotations

import random

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from rtgate.relay.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameScanner,
    close_payload,
    encode_frame,
    parse_close,
    payload_of,
    peek_type,
)

MIB = 1024 * 1024


def client_end() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN, max_size=None)


def server_end() -> ServerProtocol:
    return ServerProtocol(state=State.OPEN, max_size=None)


def wire(masked: bool, *payloads: bytes) -> bytes:
    """Text frames as a client (masked) or a server (unmasked) sends them."""
    end = client_end() if masked else server_end()
    for payload in payloads:
        end.send_text(payload)
    return b"".join(end.data_to_send())


def received_by(masked: bool, data: bytes) -> list[Frame]:
    """What the other end parses from ``data`` (a server reads masked frames)."""
    end = server_end() if masked else client_end()
    end.receive_data(data)
    assert end.parser_exc is None
    return [e for e in end.events_received() if isinstance(e, Frame)]


def scan(scanner: FrameScanner, chunks: list[bytes]) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Feed ``chunks``; all whole bytes returned, and frames located in that concatenation."""
    out, frames = b"", []
    for chunk in chunks:
        whole, found = scanner.feed(chunk)
        frames += [(start + len(out), head, length, b0) for start, head, length, b0 in found]
        out += whole
    return out, frames


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_one_frame_of_each_length_encoding_is_found(masked: bool, size: int) -> None:
    """7-bit, 16-bit (126) and 64-bit (127) lengths (RFC 6455 §5.2), masked or not."""
    payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    data = wire(masked, payload)
    whole, frames = FrameScanner(masked=masked, max_payload=MIB).feed(data)
    assert whole is data  # whole frames only: no copy
    assert len(frames) == 1
    start, head, length, b0 = frames[0]
    assert (start, length, b0 & 0x0F) == (0, size, OP_TEXT)
    assert head == len(data) - size
    assert payload_of(whole, frames[0]) == payload


@pytest.mark.parametrize("masked", [True, False])
def test_a_chunk_cut_at_every_offset_yields_the_same_frames(masked: bool) -> None:
    """A stream split anywhere — inside a header, a length, a mask key, a payload — gives
    back the same bytes, whole frames only, with nothing held at the end."""
    payloads = [b'{"type":"a"}', b"x" * 300, b"y" * 70_000, b""]
    data = wire(masked, *payloads)
    # Every offset through the first two frames and the 64-bit header, then every 997th.
    cuts = sorted({*range(0, 360), *range(360, len(data) - 40, 997), *range(len(data) - 40, len(data) + 1)})
    for cut in cuts:
        scanner = FrameScanner(masked=masked, max_payload=MIB)
        out, frames = scan(scanner, [data[:cut], data[cut:]])
        assert out == data
        assert [payload_of(out, f) for f in frames] == payloads
        assert scanner.held == 0


def test_random_chunks_and_coalesced_frames() -> None:
    """Many frames in random chunk sizes, several per chunk or one split over many."""
    rng = random.Random(7)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.choice([1, 50, 125, 126, 3000, 70000])))
                for _ in range(40)]
    client = client_end()
    for payload in payloads:
        client.send_binary(payload)
    data = b"".join(client.data_to_send())
    chunks, at = [], 0
    while at < len(data):
        step = rng.choice([1, 2, 3, 7, 100, 4096, 65536])
        chunks.append(data[at : at + step])
        at += step
    out, frames = scan(FrameScanner(masked=True, max_payload=MIB), chunks)
    assert out == data
    assert [payload_of(out, f) for f in frames] == payloads
    assert {f[3] & 0x0F for f in frames} == {OP_BINARY}
    assert [f.data for f in received_by(True, out)] == payloads


def test_wrong_mask_bit_is_a_protocol_error() -> None:
    """A client frame must be masked and a server frame must not (§5.1): close 1002."""
    with pytest.raises(FrameError) as unmasked:
        FrameScanner(masked=True, max_payload=MIB).feed(wire(False, b"hi"))
    assert unmasked.value.close_code == 1002
    with pytest.raises(FrameError) as masked:
        FrameScanner(masked=False, max_payload=MIB).feed(wire(True, b"hi"))
    assert masked.value.close_code == 1002


def test_oversized_frame_is_refused_from_its_header() -> None:
    """A frame over max_payload raises 1009 as soon as its header is read, before the payload."""
    header = wire(True, b"z" * 70_000)[:14]
    scanner = FrameScanner(masked=True, max_payload=65_535)
    with pytest.raises(FrameError) as error:
        scanner.feed(header)
    assert error.value.close_code == 1009


def test_fragments_and_control_frames_keep_their_opcodes() -> None:
    """A fragmented message with a ping between its fragments (§5.4): each frame found."""
    client = client_end()
    client.send_text(b'{"type":', fin=False)
    client.send_ping(b"p")
    client.send_continuation(b'"x"}', fin=True)
    data = b"".join(client.data_to_send())
    _, frames = FrameScanner(masked=True, max_payload=MIB).feed(data)
    assert [(f[3] & 0x0F, bool(f[3] & 0x80)) for f in frames] == [
        (OP_TEXT, False), (OP_PING, True), (OP_CONT, True)]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"type":"input_audio_buffer.append","audio":"AAAA', "input_audio_buffer.append"),
        (b'{"event_id":"evt_1","type": "response.create"}', "response.create"),
        (b'{"session":{"type":"realtime"},"type":"session.update"}', None),  # nested first
        (b'{"audio":"AAAA', None),  # not in the prefix
    ],
)
def test_peek_type_reads_a_leading_type_only(payload: bytes, kind: str | None) -> None:
    assert peek_type(payload) == kind


def test_peek_of_a_masked_frame_unmasks_only_the_prefix() -> None:
    """A client frame's first bytes unmask on their own (§5.3): its type is readable."""
    data = wire(True, b'{"type":"input_audio_buffer.append","audio":"' + b"A" * 5000 + b'"}')
    whole, frames = FrameScanner(masked=True, max_payload=MIB).feed(data)
    assert peek_type(payload_of(whole, frames[0], 128)) == "input_audio_buffer.append"


@pytest.mark.parametrize("size", [0, 125, 126, 70_000])
def test_frames_rtgate_writes_parse_at_the_other_end(size: int) -> None:
    """encode_frame: masked frames parse at a server, unmasked ones at a client."""
    payload = b"q" * size
    for masked in (True, False):
        frames = received_by(masked, encode_frame(OP_TEXT, payload, mask=masked))
        assert [(f.opcode, f.data, f.fin) for f in frames] == [(Opcode.TEXT, payload, True)]
    close = received_by(True, encode_frame(OP_CLOSE, close_payload(4000, "r" * 200), mask=True))[0]
    assert parse_close(close.data) == (4000, "r" * 123)
    assert parse_close(b"") == (1005, "")

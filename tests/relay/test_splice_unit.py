"""The spliced relay's core (relay/splice.py) between two fake transports.

Both ends are websockets' sans-I/O protocols: a client that masks what it sends, an
upstream server that does not. What the relay writes to each fake transport is parsed by
the other end's protocol, so every test checks a valid RFC 6455 stream, not bytes.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from rtgate.relay.policy import Ending
from rtgate.relay.splice import SplicedRelay
from rtgate.relay.upstream import RelayLimits
from rtgate.relay.wire import OP_CLOSE, OP_TEXT, FrameScanner, parse_close
from rtgate.server.metrics import Metrics

DONE_S = 10.0
"""Generous bound on every wait (the relay's own limits here are tens of milliseconds)."""


class FakeTransport:
    """Records writes; close/abort report the loss to the sink on the next loop turn."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.reading = True
        self.closed = self.aborted = False
        self.buffered = 0  # what get_write_buffer_size reports
        self.sink: Any = None
        self.wrote = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data
        self.wrote.set()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def _lose(self) -> None:
        if not (self.closed or self.aborted):
            asyncio.get_running_loop().call_soon(self.sink.connection_lost, None)

    def close(self) -> None:
        self._lose()
        self.closed = True

    def abort(self) -> None:
        self._lose()
        self.aborted = True

    def frames(self, *, masked: bool) -> list[Frame]:
        """What the far end parses from everything written (a server reads masked frames)."""
        end: Any = (ServerProtocol(state=State.OPEN, max_size=None) if masked
                    else ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None))
        end.receive_data(bytes(self.data))
        assert end.parser_exc is None, end.parser_exc
        return [e for e in end.events_received() if isinstance(e, Frame)]


def client_bytes(*frames: tuple[Opcode, bytes]) -> bytes:
    end = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None)
    for opcode, data in frames:
        end.send_frame(Frame(opcode, data))
    return b"".join(end.data_to_send())


def server_bytes(*frames: tuple[Opcode, bytes] | Frame) -> bytes:
    end = ServerProtocol(state=State.OPEN, max_size=None)
    for frame in frames:
        end.send_frame(frame if isinstance(frame, Frame) else Frame(*frame))
    return b"".join(end.data_to_send())


class Pair:
    def __init__(self, **limits: Any) -> None:
        defaults: dict[str, Any] = {"ping_interval_s": 0, "client_ping_interval_s": 0,
                                    "answer_deadline_s": 60, "close_timeout_s": 0.05}
        self.metrics = Metrics().relay
        self.relay = SplicedRelay(
            name="up", relay_id="relay_test", limits=RelayLimits(**{**defaults, **limits}),
            metrics=self.metrics, frames={"client_to_upstream": 0, "upstream_to_client": 0},
            bytes_={"client_to_upstream": 0, "upstream_to_client": 0})
        self.client, self.upstream = FakeTransport(), FakeTransport()
        self.client.sink, self.upstream.sink = self.relay.client_sink, self.relay.upstream_sink

    def start(self, **kwargs: Any) -> Pair:
        self.relay.start(self.client, b"", self.upstream, b"", **kwargs)  # type: ignore[arg-type]
        return self

    async def ending(self) -> Ending:
        return await asyncio.wait_for(self.relay.wait(), DONE_S)


def chunked(data: bytes, rng: random.Random) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        step = rng.choice([1, 3, 17, 500, 5000])
        out.append(data[at : at + step])
        at += step
    return out


async def test_frames_pass_verbatim_whatever_the_chunking() -> None:
    """Client frames reach the upstream and upstream frames reach the client byte for byte
    (masking keys included), however the sockets cut them; types are counted per message."""
    pair = Pair().start()
    rng = random.Random(3)
    up = client_bytes(*[(Opcode.TEXT, b'{"type":"input_audio_buffer.append","audio":"' + b"A" * n + b'"}')
                        for n in (10, 3000, 70_000)], (Opcode.BINARY, b"\x00\xff"))
    down = server_bytes(*[(Opcode.TEXT, b'{"type":"response.output_audio.delta","delta":"' + b"B" * n + b'"}')
                          for n in (1, 126, 65_536)])
    for chunk in chunked(up, rng):
        pair.relay.client_sink.data_received(chunk)
    for chunk in chunked(down, rng):
        pair.relay.upstream_sink.data_received(chunk)
    assert bytes(pair.upstream.data) == up
    assert bytes(pair.client.data) == down
    pair.client.close()  # the counts reach the registry by the end of the session
    pair.upstream.close()
    await pair.ending()
    events = pair.metrics.events
    assert events.get("up", "client_to_upstream", "input_audio_buffer.append") == 3
    assert events.get("up", "client_to_upstream", "other") == 1  # the binary frame
    assert events.get("up", "upstream_to_client", "response.output_audio.delta") == 3
    assert pair.relay.frames == {"client_to_upstream": 4, "upstream_to_client": 3}


async def test_bound_session_update_goes_upstream_first_masked() -> None:
    """An ephemeral key's bound session: a masked session.update, without model, before
    anything of the client's."""
    pair = Pair()
    pair.relay.start(pair.client, client_bytes((Opcode.TEXT, b'{"type":"response.create"}')),  # type: ignore[arg-type]
                     pair.upstream, b"", bound_session={"model": "m", "instructions": "bound"})
    frames = pair.upstream.frames(masked=True)
    assert json.loads(frames[0].data) == {"type": "session.update", "session": {"instructions": "bound"}}
    assert json.loads(frames[1].data) == {"type": "response.create"}


async def test_keepalive_pong_is_taken_out_of_the_client_stream() -> None:
    """rtgate pings the upstream; the matching pong never reaches the client, while the
    client's own pongs and every other frame pass."""
    pair = Pair(ping_interval_s=0.01, ping_timeout_s=DONE_S).start()
    await asyncio.wait_for(pair.upstream.wrote.wait(), DONE_S)
    ping = pair.upstream.frames(masked=True)[0]
    assert ping.opcode is Opcode.PING
    pair.relay.upstream_sink.data_received(server_bytes(
        (Opcode.PONG, b"the client's"), (Opcode.TEXT, b'{"type":"x"}'), (Opcode.PONG, ping.data)))
    assert [(f.opcode, f.data) for f in pair.client.frames(masked=False)] == [
        (Opcode.PONG, b"the client's"), (Opcode.TEXT, b'{"type":"x"}')]


async def test_upstream_lost_mid_frame_gives_whole_frames_then_error_and_close() -> None:
    """A reset with half a frame read: the client gets the whole frames before it, then
    error upstream_connection_lost and close 1011; its close reply ends the session."""
    pair = Pair().start()
    whole = server_bytes((Opcode.TEXT, b'{"type":"session.created"}'))
    half = server_bytes((Opcode.TEXT, b'{"type":"response.output_audio.delta","delta":"' + b"C" * 900))[:400]
    pair.relay.upstream_sink.data_received(whole + half)
    pair.upstream.sink.connection_lost(ConnectionResetError())
    frames = pair.client.frames(masked=False)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.TEXT, Opcode.CLOSE]
    assert json.loads(frames[1].data)["error"]["code"] == "upstream_connection_lost"
    assert parse_close(frames[2].data) == (1011, "server_error.upstream_connection_lost")
    pair.relay.client_sink.data_received(client_bytes((Opcode.CLOSE, frames[2].data)))
    ending = await pair.ending()
    assert (ending.close_code, ending.error.code if ending.error else None) == (1011, "upstream_connection_lost")
    assert pair.client.closed and not pair.client.aborted


async def test_no_error_event_inside_a_fragmented_message() -> None:
    """The upstream dies between two fragments of a message: only the close is sent (a data
    frame may not interleave with fragments, RFC 6455 §5.4)."""
    pair = Pair().start()
    pair.relay.upstream_sink.data_received(server_bytes(Frame(Opcode.TEXT, b'{"type":', fin=False)))
    pair.upstream.sink.connection_lost(None)
    # (websockets' own parser refuses a close inside a message; the frames are read raw.)
    _, frames = FrameScanner(masked=False, max_payload=1 << 20).feed(bytes(pair.client.data))
    assert [f[3] & 0x0F for f in frames] == [OP_TEXT, OP_CLOSE]
    ending = await pair.ending()  # the client never answers: closed after close_timeout_s
    assert ending.close_code == 1011


async def test_client_that_stops_reading_is_closed_1008_and_dropped() -> None:
    """The client's buffer fills: upstream reading pauses; past send_deadline_s the client
    gets close 1008 (no error event: it would not be read), the upstream a masked close
    1000, and the connection is dropped since its buffer never drains."""
    pair = Pair(send_deadline_s=0.05).start()
    pair.client.buffered = 1 << 20
    pair.relay.client_sink.pause_writing()
    assert not pair.upstream.reading
    ending = await pair.ending()
    assert ending.client_stuck and ending.close_code == 1008
    assert [f.opcode for f in pair.client.frames(masked=False)] == [Opcode.CLOSE]
    assert pair.client.aborted
    assert parse_close(pair.upstream.frames(masked=True)[-1].data) == (1000, "client not reading")


async def test_client_frame_over_the_limit_closes_1009_before_forwarding() -> None:
    """A client frame over max_frame_bytes: close 1009 to the client from its header alone;
    nothing of it goes upstream, which is closed 1000."""
    pair = Pair(max_frame_bytes=1000).start()
    pair.relay.client_sink.data_received(client_bytes((Opcode.TEXT, b"x" * 2000))[:20])
    assert parse_close(pair.client.frames(masked=False)[-1].data)[0] == 1009
    assert [parse_close(f.data) for f in pair.upstream.frames(masked=True)] == [(1000, "client disconnected")]


async def test_upstream_close_code_passes_through_and_client_reply_goes_back() -> None:
    """The upstream's close (4000 and its reason) reaches the client as sent; the client's
    reply reaches the upstream; the session ends with the upstream's code."""
    pair = Pair().start()
    close = server_bytes((Opcode.CLOSE, b"\x0f\xa0invalid_request_error.x"))
    pair.relay.upstream_sink.data_received(close)
    assert bytes(pair.client.data) == close
    reply = client_bytes((Opcode.CLOSE, b"\x0f\xa0"))
    pair.relay.client_sink.data_received(reply)
    assert bytes(pair.upstream.data) == reply
    pair.upstream.sink.connection_lost(None)
    ending = await pair.ending()
    assert (ending.close_code, ending.reason, ending.error) == (4000, "invalid_request_error.x", None)

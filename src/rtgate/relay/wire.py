"""WebSocket frame boundaries in a raw byte stream, and the few frames rtgate writes itself.

A spliced relay (:mod:`.splice`) forwards frames as bytes. It never decodes a payload; it
only needs to know where each frame ends (RFC 6455 §5.2), so that what it writes itself —
a keepalive ping, a close, an ``error`` event — lands between two frames, never inside one.

Rules, from RFC 6455:

* Every frame a client sends is masked, every frame a server sends is not (§5.1). A
  frame with the wrong mask bit for its direction is a protocol error (close 1002).
* The payload length is 7 bits, or 16 bits after ``126``, or 64 bits after ``127``
  (§5.2); a masked frame carries its 4-byte masking key after the length.
* Masking XORs the payload with the key, starting at the payload's first byte (§5.3),
  so a payload's first bytes can be unmasked without the rest.
* Control frames (close, ping, pong; opcode ≥ 8) may sit between the fragments of a
  message (§5.4); a data frame may not. rtgate therefore writes a data frame of its own
  only between messages, and control frames at any frame boundary.

:class:`FrameScanner` is a pure, incremental splitter: it takes chunks as they come off a
socket and returns the bytes of every frame completed so far, holding back an incomplete
tail. It reads 2–14 header bytes per frame and no payload.
"""

from __future__ import annotations

import os
import struct

from websockets.utils import apply_mask

__all__ = [
    "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_PING", "OP_PONG", "OP_TEXT", "FrameError",
    "FrameScanner", "ScannedFrame", "close_payload", "encode_frame", "parse_close", "payload_of",
    "peek_type", "unmask",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

ScannedFrame = tuple[int, int, int, int]
"""``(start, header_length, payload_length, first_byte)`` of one whole frame in the bytes
:meth:`FrameScanner.feed` returned; the opcode is ``first_byte & 0x0F``, FIN is
``first_byte & 0x80``, and a masked frame's key is the header's last 4 bytes."""

PEEK_BYTES = 128
"""Payload bytes :func:`peek_type` looks at (an event's ``type`` comes first, or after a short
``event_id``, in every client seen)."""


class FrameError(Exception):
    """The stream breaks RFC 6455 or a limit; ``close_code`` is the close to send (1002, 1009)."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


class FrameScanner:
    """Splits one direction of a WebSocket stream into whole frames, without copying payloads.

    ``masked`` is the mask bit every frame must carry (``True`` for client → server).
    ``max_payload`` bounds one frame's payload: a longer frame raises :class:`FrameError`
    (1009) as soon as its header is read, before its payload is buffered. Memory held is
    at most one incomplete frame.
    """

    __slots__ = ("_held", "_mask_bit", "_max", "_need")

    def __init__(self, *, masked: bool, max_payload: int) -> None:
        self._mask_bit = 0x80 if masked else 0
        self._max = max_payload
        self._held: list[bytes] = []
        self._need = 0  # bytes still missing from the held frame; 0: its header is incomplete

    @property
    def held(self) -> int:
        """Bytes of an incomplete frame held back (0: the stream is at a frame boundary)."""
        return sum(len(b) for b in self._held)

    def feed(self, data: bytes) -> tuple[bytes, list[ScannedFrame]]:
        """Take the next chunk; return ``(whole, frames)``.

        ``whole`` is every byte of the frames completed by this chunk (with the held tail
        before it), in order, and ``frames`` locates each of them in ``whole``; ``whole`` is
        ``data`` itself (no copy) when the chunk holds whole frames only. Raises
        :class:`FrameError` on a wrong mask bit or an oversized frame.
        """
        held = self._held
        if held:
            if self._need > len(data):
                held.append(data)
                self._need -= len(data)
                return b"", []
            held.append(data)
            data = b"".join(held)
            self._held = []
        n = len(data)
        pos = 0
        need = 0
        frames: list[ScannedFrame] = []
        mask_bit, limit = self._mask_bit, self._max
        while n - pos >= 2:
            b1 = data[pos + 1]
            if b1 & 0x80 != mask_bit:
                raise FrameError(1002, "unmasked client frame" if mask_bit else "masked server frame")
            length = b1 & 0x7F
            if length < 126:
                head = 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                head = 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            if length > limit:
                raise FrameError(1009, f"frame exceeds limit of {limit} bytes")
            if mask_bit:
                head += 4
            end = pos + head + length
            if end > n:
                need = end - n
                break
            frames.append((pos, head, length, data[pos]))
            pos = end
        if pos < n:
            self._held = [data[pos:]]
            self._need = need
            return data[:pos], frames
        return data, frames


def unmask(data: bytes, key: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``key`` (RFC 6455 §5.3); its own inverse."""
    return apply_mask(data, key)


def payload_of(whole: bytes, frame: ScannedFrame, limit: int | None = None) -> bytes:
    """The (unmasked) payload of ``frame`` in ``whole``, or its first ``limit`` bytes."""
    start, head, length, _ = frame
    begin = start + head
    end = begin + (length if limit is None else min(length, limit))
    if whole[start + 1] & 0x80:
        return apply_mask(whole[begin:end], whole[begin - 4 : begin])
    return whole[begin:end]


def peek_type(prefix: bytes) -> str | None:
    """The top-level ``type`` of a JSON event from its first bytes, or ``None`` if not there.

    The same rule as :func:`rtgate.relay.frames.frame_type`: the first ``"type"`` key is
    trusted only when no nested object opens before it.
    """
    at = prefix.find(b'"type"')
    if at <= 0 or prefix.find(b"{", 1, at) != -1:
        return None
    start = prefix.find(b'"', at + 6)
    end = prefix.find(b'"', start + 1)
    if 0 < start < at + 10 and end > start:
        try:
            return prefix[start + 1 : end].decode()
        except UnicodeDecodeError:
            return None
    return None


def encode_frame(opcode: int, payload: bytes, *, mask: bool) -> bytes:
    """One final frame; ``mask``: as a client sends it, with a fresh random key (§5.3)."""
    first = 0x80 | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the reason cut to fit 125 bytes (§5.5.1)."""
    return struct.pack("!H", code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close payload; an empty one is 1005, "no status" (§7.1.5)."""
    if len(payload) < 2:
        return 1005, ""
    return (payload[0] << 8) | payload[1], payload[2:].decode(errors="replace")

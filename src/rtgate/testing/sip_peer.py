"""A real SIP phone on loopback for tests and benchmarks: aiosipua's UAC and aiortp's RTP.

:class:`SipPeer` places a call (INVITE with an SDP offer), streams PCM over RTP in real
time (aiortp's paced sender: one packet per 20 ms), records the RTP audio it receives
with arrival times, sends RFC 4733 DTMF, receives the server's BYE and REFER, and hangs
up. It is a different code path of the libraries from the server's (UAC, not UAS), and
speaks plain SIP/RTP over sockets, as a desk phone or a trunk would.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import numpy as np
from aiortp import RTPSession
from aiosipua import IncomingCall, SipDigestAuth, SipUAS, notify_refer, parse_sdp
from aiosipua.message import SipRequest, SipResponse
from aiosipua.outgoing_call import OutgoingCall
from aiosipua.uac import SipUAC

from ..audio import G711_RATE, resample_pcm16
from ..server.sip import UdpTransport

SOUND_RMS = 300
"""RMS (PCM16) above which a received packet counts as sound, not silence or noise."""


def free_sip_port(host: str = "127.0.0.1") -> int:
    """A port free right now for both UDP and TCP (the SIP endpoint listens on both; a
    UDP-only probe can pick a port a TCP connection of another process is using)."""
    while True:
        port = free_udp_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, port))
            return port
        except OSError:
            continue


def free_udp_port(host: str = "127.0.0.1", pair: bool = False) -> int:
    """A UDP port free right now (even, with the next one free too, when ``pair``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if not pair:
            return port
        if port % 2 == 0 and port < 65535:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                    second.bind((host, port + 1))
                return port
            except OSError:
                continue


def offer_sdp(host: str, rtp_port: int, codecs: str = "0 8 101", proto: str = "RTP/AVP") -> str:
    """An SDP offer like a desk phone's: PCMU, PCMA and telephone-event by default."""
    names = {"0": "PCMU/8000", "8": "PCMA/8000", "101": "telephone-event/8000",
             "9": "G722/8000", "18": "G729/8000", "111": "opus/48000/2"}
    lines = ["v=0", f"o=peer 1 1 IN IP4 {host}", "s=call", f"c=IN IP4 {host}", "t=0 0",
             f"m=audio {rtp_port} {proto} {codecs}"]
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in codecs.split() if pt in names]
    if "101" in codecs.split():
        lines.append("a=fmtp:101 0-16")
    lines += ["a=ptime:20", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


@dataclass
class Heard:
    """RTP audio received: 8 kHz PCM16 and the arrival time of each packet."""

    pcm: bytearray = field(default_factory=bytearray)
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """``(time.monotonic(), rms)`` per packet."""

    def first_sound_after(self, t: float, rms: int = 300) -> float | None:
        """Arrival time of the first packet after ``t`` louder than ``rms``."""
        for at, level in self.arrivals:
            if at >= t and level >= rms:
                return at
        return None

    def loud_ms(self, rms: int = 300) -> int:
        return 20 * sum(1 for _, level in self.arrivals if level >= rms)


class SipPeer:
    """One phone: ``await start()``, ``call()``, stream / DTMF, ``hangup()``, ``close()``."""

    def __init__(self, server: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.server = server
        self.host = host
        self.sip_port = free_udp_port(host)
        self.rtp_port = free_udp_port(host, pair=True)
        self.transport = UdpTransport(local_addr=(host, self.sip_port))
        self.uac = SipUAC(self.transport)
        self.uas = SipUAS(self.transport, uac=self.uac)
        self.uas.on_bye = self._on_bye
        self.uas.on_refer = self._on_refer
        self.call_: OutgoingCall | None = None
        self.rtp: RTPSession | None = None
        self.heard = Heard()
        self.bye = asyncio.Event()
        self.refer_to: asyncio.Queue[str] = asyncio.Queue()
        self._referred: IncomingCall | None = None
        self.provisional: list[int] = []
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self._sound = asyncio.Event()

    async def start(self) -> None:
        await self.uas.start()
        handler = self.transport.on_message

        def on_message(msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
            if isinstance(msg, SipResponse):
                self.responses.put_nowait(msg)
            assert handler is not None
            handler(msg, addr)

        self.transport.on_message = on_message

    async def response(self, method: str, seq: int | None = None, within_s: float = 10.0) -> SipResponse:
        """The next final response to a ``method`` request (with CSeq number ``seq``)."""
        async with asyncio.timeout(within_s):
            while True:
                msg = await self.responses.get()
                cseq = msg.cseq
                if (msg.status_code >= 200 and cseq is not None and cseq.method == method
                        and seq in (None, cseq.seq)):
                    return msg

    def reinvite(self, sdp: str | None = None) -> int:
        """A re-INVITE on the established call (default: the same offer again); its CSeq."""
        assert self.call_ is not None
        request = self.uac.send_reinvite(self.call_.dialog,
                                         parse_sdp(sdp or offer_sdp(self.host, self.rtp_port)), self.server)
        assert request.cseq is not None
        return request.cseq.seq

    def cancel(self) -> None:
        assert self.call_ is not None
        self.call_.cancel(self.uac)

    def invite(self, sdp: str | None = None, headers: dict[str, str] | None = None,
               auth: tuple[str, str] | None = None) -> OutgoingCall:
        """Send the INVITE (default offer: PCMU, PCMA, telephone-event); ``auth``:
        ``(username, password)`` answering a digest challenge."""
        offer = parse_sdp(sdp or offer_sdp(self.host, self.rtp_port))
        call = self.uac.send_invite(
            f"sip:caller@{self.host}:{self.sip_port}", f"sip:agent@{self.server[0]}:{self.server[1]}",
            self.server, offer, extra_headers=headers,
            auth=SipDigestAuth(*auth) if auth is not None else None)
        call.on_ringing = lambda c: self.provisional.append(180)
        self.call_ = call
        return call

    async def answered(self, within_s: float = 15.0) -> None:
        """Wait for the 200 OK, then open RTP towards the answer's address."""
        assert self.call_ is not None
        await self.call_.wait_answered(within_s)
        answer = self.call_.sdp_answer
        assert answer is not None and answer.rtp_address is not None and answer.audio is not None
        payload_type = int(answer.audio.formats[0])
        self.rtp = await RTPSession.create(local_addr=(self.host, self.rtp_port),
                                           remote_addr=answer.rtp_address, payload_type=payload_type,
                                           paced=True, jitter_prefetch=1)
        self.rtp.on_audio = self._on_audio

    def _on_audio(self, pcm: bytes, timestamp: int) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        self.heard.pcm += pcm
        rms = int(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0
        self.heard.arrivals.append((time.monotonic(), rms))
        if rms >= SOUND_RMS:
            self._sound.set()

    async def first_sound(self, after: float, within_s: float = 60.0) -> float:
        """Wait for the first packet with sound that arrives after ``after``; its time."""
        async with asyncio.timeout(within_s):
            while True:
                self._sound.clear()
                heard = self.heard.first_sound_after(after)
                if heard is not None:
                    return heard
                await self._sound.wait()

    def _on_bye(self, call: IncomingCall, request: SipRequest) -> None:
        self.bye.set()

    def _on_refer(self, call: IncomingCall, refer_to: str) -> None:
        self._referred = call
        self.refer_to.put_nowait(refer_to)

    def transfer_progress(self, status: int, reason: str = "") -> None:
        """Report the transfer asked by the last REFER: a ``NOTIFY`` with a
        ``message/sipfrag`` status line (RFC 3515), as a phone does while it calls the target."""
        assert self._referred is not None, "no REFER received"
        notify_refer(self._referred, status, reason)

    async def say(self, pcm24k: bytes, then_silence_ms: int = 3000) -> float:
        """Stream 24 kHz PCM16 as 20 ms RTP packets in real time (aiortp's paced sender).

        Returns the end of speech: when the last voiced sample (> -40 dBFS) went out, as
        ``time.monotonic()``. ``then_silence_ms`` of silence is queued behind the speech, as
        a phone keeps sending while the line is quiet.
        """
        assert self.rtp is not None
        pcm = resample_pcm16(pcm24k, 24_000, G711_RATE)
        frame = G711_RATE * 20 // 1000 * 2
        frames = [pcm[i:i + frame].ljust(frame, b"\0") for i in range(0, len(pcm), frame)]
        for chunk in frames:
            self.rtp.send_audio_pcm_auto(chunk)
        await self.rtp.drain()
        last_sent = time.monotonic()  # the pacer sent the last frame on this tick
        for _ in range(then_silence_ms // 20):
            self.rtp.send_audio_pcm_auto(bytes(frame))
        voiced = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 328)
        if voiced.size == 0:
            return last_sent
        last = int(voiced[-1])
        frames_after = len(frames) - 1 - last // (frame // 2)
        return last_sent - frames_after * 0.020 + ((last % (frame // 2)) + 1) / G711_RATE

    def dtmf(self, digit: str) -> None:
        assert self.rtp is not None
        self.rtp.send_dtmf(digit, 100)

    def hangup(self) -> None:
        assert self.call_ is not None
        self.call_.hangup(self.uac)

    async def close(self) -> None:
        if self.rtp is not None:
            await self.rtp.close()
        await self.uas.stop()

"""End of user speech → first assistant audio: WebRTC call against WebSocket, in one run.

    python benchmarks/bench_webrtc.py [--rounds N] [--quick] [--stack fake|default]
                                      [--input-jitter-frames N]

One rtgate (``running_server``) on this machine, Silero VAD with ``server_vad`` defaults,
and either fake STT/LLM/TTS (``--stack fake``, the default: deterministic, so the figure is
the transport's and the turn machinery's) or the embedded default stack (``--stack
default``: Whisper tiny.en, SmolLM2-135M, espeak-ng). Each of five fixed utterances
(espeak-ng speech) is sent in real time in 20 ms frames — 500 ms of silence, the speech,
1.5 s of silence — in a fresh session, alternating transports per utterance so load noise
hits both alike:

* **WebSocket**: the official ``openai`` SDK appends 24 kHz PCM16 chunks; *first audio* is
  the arrival of the first ``response.output_audio.delta``.
* **WebRTC**: an aiortc peer (the browser stand-in) opens a call with
  ``client.realtime.calls.create`` and sends the speech, resampled to 48 kHz, on its Opus
  microphone track; *first audio* is the first decoded inbound frame with sound in it
  (peak above -36 dBFS), i.e. after RTP, Opus and aiortc's jitter buffer. Also printed: the
  arrival of ``output_audio_buffer.started`` on the data channel (the server's playback
  start, before the network and the receiver's jitter buffer).

**End of speech** is the send time of the 20 ms frame holding the last voiced sample
(> -40 dBFS) plus that sample's offset in the frame, on both transports. Figures are
medians and p90 over utterances × rounds; the first turn of each transport is a warm-up
and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import os
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

UTTERANCES = [
    "What is the weather like in Paris today?",
    "Please book a table for two people at seven.",
    "How many kilometers is it from London to Edinburgh?",
    "Turn off the lights in the living room.",
    "What time does the next train to Boston leave?",
]
CHUNK_MS = 20
LEAD_MS = 500
TAIL_MS = 1500
MIC_RATE = 48_000
SOUND_PEAK = 512  # -36 dBFS in PCM16
SESSION: dict[str, Any] = {
    "type": "realtime", "model": "gpt-realtime", "max_output_tokens": 60,
    "instructions": "You are a friendly voice assistant. Answer in one short sentence.",
}


def speech_end_ms(pcm: bytes, rate: int = 24_000) -> float:
    """Position of the last voiced sample (> -40 dBFS) in PCM16 at ``rate``."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return 0.0 if loud.size == 0 else (int(loud[-1]) + 1) * 1000 / rate


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- WebSocket


async def websocket_turn(base_url: str, pcm: bytes) -> float:
    """Seconds from end of speech to the first ``response.output_audio.delta``."""
    from openai import AsyncOpenAI

    from rtgate.testing.audio import chunks, silence_pcm

    audio = silence_pcm(LEAD_MS) + pcm + silence_pcm(TAIL_MS)
    end_ms = LEAD_MS + speech_end_ms(pcm)
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session=SESSION)  # type: ignore[arg-type]
        first_audio: list[float] = []

        async def read() -> None:
            async for event in conn:
                if event.type == "response.output_audio.delta" and not first_audio:
                    first_audio.append(time.perf_counter())
                elif event.type == "response.done":
                    return

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        for index, chunk in enumerate(chunks(audio, CHUNK_MS)):
            await asyncio.sleep(max(0.0, started + index * CHUNK_MS / 1000 - time.perf_counter()))
            await conn.input_audio_buffer.append(audio=chunk)
        await asyncio.wait_for(reader, 60)
    return first_audio[0] - (started + end_ms / 1000)


# --------------------------------------------------------------------------- WebRTC


def _microphone_track() -> Any:
    import av
    from aiortc import MediaStreamTrack

    class Microphone(MediaStreamTrack):
        """Paced 20 ms frames at 48 kHz: silence until :meth:`say` queues an utterance."""

        kind = "audio"
        samples = MIC_RATE * CHUNK_MS // 1000

        def __init__(self) -> None:
            super().__init__()
            self._frames: deque[bytes] = deque()
            self._start: float | None = None
            self._ts = 0
            self._end_frame = -1
            self._end_offset_s = 0.0
            self._sent = 0
            self.speech_end: float | None = None

        def say(self, pcm48: bytes) -> None:
            audio = bytes(MIC_RATE * 2 * LEAD_MS // 1000) + pcm48 + bytes(MIC_RATE * 2 * TAIL_MS // 1000)
            size = self.samples * 2
            audio = audio.ljust(-(-len(audio) // size) * size, b"\0")
            end_ms = LEAD_MS + speech_end_ms(pcm48, MIC_RATE)
            frame_ms = CHUNK_MS
            self._end_frame = self._sent + int(end_ms // frame_ms)
            self._end_offset_s = (end_ms % frame_ms) / 1000
            self._frames.extend(audio[i : i + size] for i in range(0, len(audio), size))

        async def recv(self) -> av.AudioFrame:
            if self._start is None:
                self._start = time.perf_counter()
            else:
                self._ts += self.samples
                wait = self._start + self._ts / MIC_RATE - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)  # real-time pacing of the microphone
            pcm = self._frames.popleft() if self._frames else bytes(self.samples * 2)
            if self._sent == self._end_frame:
                self.speech_end = time.perf_counter() + self._end_offset_s
            self._sent += 1
            frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
            frame.planes[0].update(pcm)
            frame.sample_rate = MIC_RATE
            frame.pts = self._ts
            frame.time_base = fractions.Fraction(1, MIC_RATE)
            return frame

    return Microphone()


async def webrtc_turn(base_url: str, pcm: bytes) -> tuple[float, float]:
    """Seconds from end of speech to (first sound decoded at the peer,
    ``output_audio_buffer.started`` on the data channel)."""
    import json

    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError
    from openai import AsyncOpenAI

    from rtgate.audio import resample_pcm16

    mic = _microphone_track()
    pc = RTCPeerConnection()
    pc.addTrack(mic)
    dc = pc.createDataChannel("oai-events")
    created, done = asyncio.Event(), asyncio.Event()
    first_sound: list[float] = []
    started_at: list[float] = []
    listeners: list[asyncio.Task[None]] = []

    @dc.on("message")
    def on_message(message: str) -> None:
        kind = json.loads(message)["type"]
        if kind == "session.created":
            created.set()
        elif kind == "output_audio_buffer.started" and not started_at:
            started_at.append(time.perf_counter())
        elif kind == "output_audio_buffer.stopped":
            done.set()

    async def listen(track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not first_sound and np.abs(frame.to_ndarray()).max() > SOUND_PEAK:
                    first_sound.append(time.perf_counter())

    pc.on("track", lambda track: listeners.append(asyncio.create_task(listen(track))))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        client = AsyncOpenAI(base_url=base_url, api_key="sk-bench")
        answer = await client.realtime.calls.create(sdp=pc.localDescription.sdp, session=SESSION)  # type: ignore[arg-type]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        await asyncio.wait_for(created.wait(), 20)
        mic.say(resample_pcm16(pcm, 24_000, MIC_RATE))
        await asyncio.wait_for(done.wait(), 60)
        for _ in range(50):  # the jitter buffer may still hold the first frames
            if first_sound:
                break
            await asyncio.sleep(0.02)
    finally:
        await pc.close()
        for task in listeners:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    assert mic.speech_end is not None and first_sound and started_at, "no answer heard"
    return first_sound[0] - mic.speech_end, started_at[0] - mic.speech_end


# --------------------------------------------------------------------------- run


def profiles_for(stack: str) -> Any:
    from rtgate.server.app import build_profiles
    from rtgate.server.settings import Settings
    from rtgate.testing.fakes import FakeLLM, FakeSTT, FakeTTS
    from rtgate.testing.server import fake_profiles

    if stack == "default":
        built = build_profiles(Settings())
        return lambda _settings: built
    return fake_profiles(FakeLLM("Sure, here is a short answer."), FakeTTS(ms_per_word=200),
                         FakeSTT("a question"))


async def run(rounds: int, stack: str, jitter_frames: int) -> str:
    from rtgate.server.settings import Settings
    from rtgate.testing.audio import speech_pcm
    from rtgate.testing.server import running_server

    audio = [await speech_pcm(text) for text in UTTERANCES]
    ws: list[float] = []
    rtc: list[float] = []
    rtc_started: list[float] = []
    settings = Settings(api_keys=("sk-bench",), webrtc_input_jitter_frames=jitter_frames)
    with running_server(settings, profiles=profiles_for(stack)) as handle:
        await websocket_turn(handle.base_url, audio[0])  # warm-up
        await webrtc_turn(handle.base_url, audio[0])
        for _ in range(rounds):
            for pcm in audio:
                ws.append(await websocket_turn(handle.base_url, pcm))
                heard, started = await webrtc_turn(handle.base_url, pcm)
                rtc.append(heard)
                rtc_started.append(started)
                print(f"  websocket {ws[-1] * 1000:6.0f} ms   webrtc {heard * 1000:6.0f} ms "
                      f"(started {started * 1000:6.0f} ms)", file=sys.stderr)
    rows = [
        ("WebSocket: first `response.output_audio.delta`", ws),
        ("WebRTC: first decoded sound at the aiortc peer", rtc),
        ("WebRTC: `output_audio_buffer.started` on the data channel", rtc_started),
    ]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
        f"stack `{stack}`; `webrtc_input_jitter_frames` {jitter_frames}; "
        f"{len(UTTERANCES)} utterances × {rounds} round(s) per transport.",
        "",
        "| end of speech → | median | p90 |",
        "|---|---|---|",
        *(f"| {name} | {statistics.median(v) * 1000:.0f} ms | {p90(v) * 1000:.0f} ms |"
          for name, v in rows),
        "",
        f"WebRTC − WebSocket (median of per-utterance differences): "
        f"{statistics.median(r - w for r, w in zip(rtc, ws, strict=True)) * 1000:+.0f} ms.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the utterances (default 3)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--stack", choices=["fake", "default"], default="fake",
                        help="fake STT/LLM/TTS (default) or the embedded default speech stack")
    parser.add_argument("--input-jitter-frames", type=int, default=1, metavar="N",
                        help="the server's webrtc_input_jitter_frames (default 1; aiortc's own is 4)")
    args = parser.parse_args(argv)
    print(asyncio.run(run(1 if args.quick else args.rounds, args.stack, args.input_jitter_frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

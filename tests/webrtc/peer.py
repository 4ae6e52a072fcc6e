"""An aiortc peer standing in for a browser: a microphone track, a data channel, a speaker."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from rtgate.testing.validate import validate_server_event

RATE = 48_000
FRAME = RATE // 50  # 20 ms


class Microphone(MediaStreamTrack):
    """Paced 20 ms frames: silence, then ``speak()`` queues a tone burst; ``mute_forever``
    stops sending anything (a peer that vanished)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[np.ndarray] = []
        self._start: float | None = None
        self._ts = 0
        self.vanished = False

    def speak(self, seconds: float = 0.6, hz: float = 440.0) -> None:
        n = int(seconds * RATE)
        tone = (0.3 * 32767 * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype(np.int16)
        self._queue += [tone[i : i + FRAME] for i in range(0, n - FRAME + 1, FRAME)]

    async def recv(self) -> av.AudioFrame:
        if self.vanished:
            await asyncio.Event().wait()
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._ts += FRAME
            wait = self._start + self._ts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of the microphone
        samples = self._queue.pop(0) if self._queue else np.zeros(FRAME, np.int16)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self._ts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class BrowserPeer:
    """Offer with audio + an ``oai-events`` data channel; collects events and audio."""

    def __init__(self, label: str = "oai-events") -> None:
        self.pc = RTCPeerConnection()
        self.mic = Microphone()
        self.pc.addTrack(self.mic)
        self.dc = self.pc.createDataChannel(label)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self.audio_frames = 0
        self.loud_frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.opened = asyncio.Event()
        self.dc.on("open", self.opened.set)

        @self.dc.on("message")
        def on_message(message: str) -> None:
            event = json.loads(message)
            validate_server_event(event)
            self.seen.append(event)
            self.events.put_nowait(event)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.audio_frames += 1
                if np.abs(frame.to_ndarray()).max() > 1000:
                    self.loud_frames += 1

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.dc.send(json.dumps(event))

    async def until(self, type_: str, within: float = 20.0) -> list[dict[str, Any]]:
        out = []
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                out.append(event)
                if event["type"] == type_:
                    return out

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

"""Text-to-speech with espeak-ng, in process, from the ``espeakng-loader`` wheel.

Contract:

* :class:`EspeakTTS` yields PCM16 mono at 24 kHz (:data:`WIRE_SAMPLE_RATE`); espeak-ng
  synthesises at 22.05 kHz and a per-request :class:`rtgate.audio.Resampler` converts
  the chunks as they are produced, so the first chunk leaves long before the sentence
  is finished.
* espeak-ng keeps global state and is not reentrant: one process-wide lock serialises
  every synthesis (and voice/rate change), and requests take turns on the ``tts:espeak``
  scheduler lane in the order of ``request.due`` (:mod:`~rtgate.pipeline.scheduler`).
  Synthesis runs on the inference pool via :func:`run_blocking`; chunks cross to the
  event loop through a bounded hand-off.
* Cancelling the consumer aborts the synthesis at the next chunk (the synth callback
  returns 1), so the lock is released within one buffer (``BUFFER_MS``).
* Synthesis runs ahead of a consumer paced to real time, buffering up to
  ``max_buffer_s`` of audio (default 120 s, about 5 MB), so the shared lock is held for
  milliseconds per sentence rather than for its playback time.
* OpenAI voice names map to espeak-ng voices and variants (:data:`VOICES`); an unknown
  name is tried as an espeak-ng voice name, then falls back to ``alloy``.
* ``speed`` (OpenAI range 0.25-1.5) scales the espeak rate of 175 words per minute,
  clamped to espeak's 80-450.

espeak-ng is GPL-3.0; it is loaded as a shared library at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from rtgate.audio import Resampler, float_to_pcm16, pcm16_to_float
from rtgate.pipeline.base import (
    TTS,
    WIRE_SAMPLE_RATE,
    BackendError,
    Deadlines,
    SpeechRequest,
    run_blocking,
)
from rtgate.pipeline.scheduler import SCHEDULER, Hold

BUFFER_MS = 60
"""Length of the chunks espeak-ng hands to the synth callback."""

DEFAULT_RATE_WPM = 175
MIN_RATE_WPM = 80
MAX_RATE_WPM = 450

VOICES: dict[str, str] = {
    "alloy": "en-us+f3",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m4",
    "coral": "en-us+f4",
    "echo": "en-us+m1",
    "sage": "en+f2",
    "shimmer": "en-us+f5",
    "verse": "en-us+m7",
    "marin": "en-us+f1",
    "cedar": "en-us+m2",
}
"""OpenAI voice name → espeak-ng ``voice+variant``."""

# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def rate_for_speed(speed: float) -> int:
    """espeak words-per-minute for an OpenAI ``speed`` factor (clamped to 80-450)."""
    return max(MIN_RATE_WPM, min(MAX_RATE_WPM, round(DEFAULT_RATE_WPM * speed)))


class _Espeak:
    """The loaded library: one per process, used only under ``lock``."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lock = threading.Lock()
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # The data path argument names the directory that holds ``espeak-ng-data``.
        data_parent = espeakng_loader.get_data_path().rsplit("/espeak-ng-data", 1)[0]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data_parent.encode(), 0)
        if rate <= 0:
            raise BackendError("espeak-ng failed to initialise", code="tts_unavailable")
        self.sample_rate = rate
        self._sink: Callable[[bytes], bool] | None = None
        # Keep a reference: ctypes callbacks must outlive every call into the library.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav: Any, numsamples: int, _events: Any) -> int:
        sink = self._sink
        if sink is None or numsamples <= 0 or not wav:
            return 0
        data = ctypes.string_at(wav, numsamples * 2)
        return 1 if sink(data) else 0

    def set_voice(self, name: str) -> bool:
        if name == self._voice:
            return True
        ok = bool(self.lib.espeak_SetVoiceByName(name.encode()) == _EE_OK)
        if ok:
            self._voice = name
        return ok

    def synth(self, text: str, voice: str, rate: int, sink: Callable[[bytes], bool]) -> None:
        """Synthesise ``text``; ``sink`` gets 22.05 kHz PCM16 and returns True to abort."""
        with self.lock:
            if not self.set_voice(voice) and not self.set_voice(VOICES["alloy"]):
                raise BackendError(f"espeak-ng has no voice {voice!r}", code="tts_voice")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
            encoded = text.encode("utf-8") + b"\0"
            self._sink = sink
            try:
                err = self.lib.espeak_Synth(
                    encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
                )
            finally:
                self._sink = None
            # EE_INTERNAL_ERROR after an abort is expected; anything else is a failure.
            if err not in (_EE_OK, -1):
                raise BackendError(f"espeak-ng synthesis failed (error {err})")


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def resolve_voice(voice: str) -> str:
    """The espeak-ng voice for an OpenAI voice name (or an espeak name passed through)."""
    return VOICES.get(voice.lower(), voice)


class EspeakTTS(TTS):
    """espeak-ng text-to-speech; see the module docstring for the contract."""

    name = "espeak"
    runs_locally = True

    def __init__(self, *, max_buffer_s: float = 120.0, deadlines: Deadlines | None = None) -> None:
        super().__init__(deadlines=deadlines)
        self.max_buffer_s = max_buffer_s

    async def warm_up(self) -> None:
        async for _ in self.synthesize(SpeechRequest(text="Ready.")):
            pass

    async def _synthesize(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        text = request.text.strip()
        if not text:
            return
        engine = await run_blocking(_engine)
        # The lane is held while espeak-ng synthesises, not while a slow reader plays.
        run = SCHEDULER.lane("tts:espeak").hold(request.due, work="speech")
        async with run:
            async for chunk in self._synthesize_on(engine, text, request, run):
                yield chunk

    async def _synthesize_on(
        self, engine: _Espeak, text: str, request: SpeechRequest, run: Hold
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        room = threading.Semaphore(max(1, round(self.max_buffer_s * 1000 / BUFFER_MS)))
        stop = threading.Event()
        resampler = Resampler(engine.sample_rate, WIRE_SAMPLE_RATE)

        def sink(data: bytes) -> bool:
            # Consumers are usually paced to real time, and waiting for them here would hold
            # the process-wide espeak lock for the whole utterance; so buffer generously
            # (synthesis is ~300x real time) and only pause past ``max_buffer_s`` of audio.
            while not room.acquire(timeout=0.05):
                if stop.is_set():
                    return True
            if stop.is_set():
                return True
            loop.call_soon_threadsafe(queue.put_nowait, data)
            return False

        def work() -> None:
            try:
                engine.synth(text, resolve_voice(request.voice), rate_for_speed(request.speed), sink)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        job = asyncio.ensure_future(run_blocking(work))
        job.add_done_callback(lambda _job: run.release())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    job.result()  # raises the synthesis error
                    return
                data = getter.result()
                if data is None:
                    break
                room.release()
                out = resampler.process(pcm16_to_float(data))
                if out.size:
                    yield float_to_pcm16(out)
            await job
            tail = resampler.process(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield float_to_pcm16(tail)
        finally:
            stop.set()
            if not job.done():
                # The worker stops at its next chunk; its error, if any, is moot now.
                job.add_done_callback(_consume_result)


def _consume_result(fut: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        fut.result()

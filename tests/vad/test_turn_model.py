"""Smart Turn v3.2 (the turn-end model) on real features and synthetic speech.

The speech is espeak-ng's (SSML ``<break>`` for a mid-sentence pause), the VAD is the real
Silero model, the core is the real session: its ``PredictTurnEnd`` queries are answered by
the real model at once (the model's own latency is the benchmark's business).
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import shutil
import subprocess
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import soxr

from rtgate.audio import float_to_pcm16
from rtgate.core import effects as fx
from rtgate.core.session import Session
from rtgate.pipeline.turn_model import (
    SmartTurn,
    TurnEndBatcher,
    clip_from_pcm16,
    log_mel_features,
    model_path,
)
from rtgate.pipeline.vad_silero import SileroVAD
from rtgate.testing.validate import validate_server_event

WIRE_RATE = 24_000
FRAME_MS = 32

needs_model = pytest.mark.skipif(model_path() is None, reason="pipecat-ai (Smart Turn) is not installed")


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    path = model_path()
    if path is None:
        pytest.skip("pipecat-ai (Smart Turn) is not installed: pip install --no-deps 'pipecat-ai>=1.14'")
    return SmartTurn(path)


def espeak(ssml: str, voice: str = "en-us") -> np.ndarray:
    """SSML spoken by espeak-ng: 24 kHz float32, trimmed to its voiced part, peak 0.5."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    raw = subprocess.run([binary, "--stdout", "-m", "-v", voice, "-s", "160", ssml],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.float32) / 32768
    samples = soxr.resample(samples, rate, WIRE_RATE).astype(np.float32)
    voiced = np.nonzero(np.abs(samples) > 0.01)[0]
    samples = samples[voiced[0] : voiced[-1] + 1]
    return (0.5 * samples / np.abs(samples).max()).astype(np.float32)


@dataclass
class Turn:
    events: list[dict]
    queries: int


def run_turn(signal: np.ndarray, model: SmartTurn, eagerness: str = "medium") -> Turn:
    """Stream ``signal`` (24 kHz, preceded by 0.5 s and followed by 2.5 s of silence)
    through Silero and the session core; answer each query with the model."""
    pcm = float_to_pcm16(np.concatenate([np.zeros(WIRE_RATE // 2, np.float32), signal,
                                         np.zeros(WIRE_RATE * 5 // 2, np.float32)]))
    session = Session(session_id="sess_turns", model="gpt-realtime", now=0.0)
    session.enable_turn_model()
    session.start()
    from rtgate.protocol.client_events import DecodeLimits, decode_client_event

    update = decode_client_event(
        '{"type": "session.update", "session": {"type": "realtime", "audio": {"input": '
        '{"turn_detection": {"type": "semantic_vad", "eagerness": "' + eagerness + '", '
        '"create_response": false}}}}}', DecodeLimits())
    session.handle(update, 0.0)  # type: ignore[arg-type]
    session.buffer.append(pcm)
    vad = SileroVAD()
    stream = vad.new_stream()
    audio16 = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, WIRE_RATE, 16_000)
    frames = audio16[: len(audio16) // 512 * 512].reshape(-1, 512).astype(np.float32)
    seen: list[dict] = []
    queries = 0
    for index, frame in enumerate(frames):
        probability = vad.infer([stream], frame[None])
        outputs = session.on_vad(index * FRAME_MS, FRAME_MS, probability, 0.0)
        while outputs:
            pending = []
            for out in outputs:
                if isinstance(out, dict):
                    validate_server_event(out)
                    seen.append(out)
                elif isinstance(out, fx.PredictTurnEnd):
                    queries += 1
                    p = model.predict([clip_from_pcm16(out.audio, WIRE_RATE)])[0]
                    pending += session.on_turn_end(out.query_id, float(p), 0.0)
            outputs = pending
    return Turn(seen, queries)


def stops(turn: Turn) -> list[int]:
    return [e["audio_end_ms"] for e in turn.events if e["type"] == "input_audio_buffer.speech_stopped"]


# ---------------------------------------------------------------------------- features


def test_features_match_pipecats_reference(smart_turn: SmartTurn) -> None:
    """The batched features equal pipecat's per-clip Whisper features (its own numpy code)."""
    path = model_path()
    assert path is not None
    spec = importlib.util.spec_from_file_location(
        "smart_turn_reference", path.parent.parent / "_whisper_features.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (100, 16_000, 50_000, 200_000)]
    ours = log_mel_features(clips)
    for clip, row in zip(clips, ours, strict=True):
        window = np.pad(clip[-128_000:], (128_000 - min(len(clip), 128_000), 0))
        expected = reference.compute_whisper_log_mel_features(window)
        assert row.shape == expected.shape == (80, 800)
        assert np.abs(row - expected).max() < 1e-4


def test_features_are_fast_for_a_batch() -> None:
    """Vectorised: eight 3 s clips in well under 100 ms (the padding is not recomputed)."""
    clips = [np.random.default_rng(i).normal(0, 0.1, 48_000).astype(np.float32) for i in range(8)]
    log_mel_features(clips)
    start = time.perf_counter()
    log_mel_features(clips)
    assert time.perf_counter() - start < 0.25


def test_batched_call_equals_single_calls(smart_turn: SmartTurn) -> None:
    """One model call for several sessions gives each the probability it would get alone."""
    clips = [espeak("What is the capital of France?"), espeak("I would like a cup of")]
    clips16 = [soxr.resample(c, WIRE_RATE, 16_000).astype(np.float32) for c in clips]
    together = smart_turn.predict(clips16)
    alone = [smart_turn.predict([c])[0] for c in clips16]
    assert np.allclose(together, alone, atol=1e-3)
    assert all(0.0 <= p <= 1.0 for p in together)


# ---------------------------------------------------------------------------- the batcher


class CountingModel:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        self.calls.append(len(clips))
        return np.array([min(1.0, len(c) / 16_000) for c in clips], dtype=np.float32)


async def test_batcher_serves_waiting_sessions_with_one_call() -> None:
    """Requests that arrive together share one model call; each gets its own answer."""
    model = CountingModel()
    batcher = TurnEndBatcher(model)
    second = bytes(2 * 8_000)  # 0.5 s at 16 kHz
    results = await asyncio.gather(*(batcher.predict(second * k, 16_000) for k in (1, 2, 3)))
    assert model.calls == [3]
    assert results == pytest.approx([0.5, 1.0, 1.0])
    await batcher.stop()


async def test_batcher_stop_fails_waiting_requests() -> None:
    """After ``stop`` a request fails with a BackendError (the core falls back to silence)."""
    from rtgate.pipeline.base import BackendError

    batcher = TurnEndBatcher(CountingModel())
    await batcher.stop()
    with pytest.raises(BackendError):
        await batcher.predict(bytes(320), 16_000)


async def test_batcher_takes_a_run_of_its_lane_due_when_asked() -> None:
    """With a lane, the model call waits for a run, due when its oldest clip was asked for:
    work due sooner (a busy core) goes first, work due later (a continuing answer) after;
    clips asked for while it waits join the same call."""
    from rtgate.pipeline.scheduler import Scheduler

    now = [100.0]
    lane = Scheduler(clock=lambda: now[0]).lane("cores", 1)
    order: list[str] = []

    class OrderedModel(CountingModel):
        def predict(self, clips: Sequence[np.ndarray]) -> np.ndarray:
            order.append("model")
            return super().predict(clips)

    async def continuation() -> None:
        async with lane.hold(150.0):
            order.append("continuation")

    async def settle() -> None:
        """Let every task that is ready run to its next wait (no wall-clock time passes)."""
        for _ in range(5):
            await asyncio.sleep(0)

    model = OrderedModel()
    batcher = TurnEndBatcher(model, lane=lane)
    clip = bytes(2 * 8_000)
    async with lane.hold(0.0):  # the core is busy
        first = asyncio.create_task(batcher.predict(clip, 16_000))
        await settle()
        assert lane.rules.waiting == 1  # the batcher, due at 100
        later = asyncio.create_task(continuation())
        await settle()
        assert lane.rules.waiting == 2
        now[0] = 101.0
        second = asyncio.create_task(batcher.predict(clip * 2, 16_000))
        await settle()
        assert model.calls == []
    assert await asyncio.gather(first, second) == pytest.approx([0.5, 1.0])
    await later
    assert model.calls == [2]
    assert order == ["model", "continuation"]
    await batcher.stop()


# ---------------------------------------------------------------------------- real speech


@needs_model
@pytest.mark.parametrize("text", ["What is the capital of France?", "How tall is Mount Everest?"])
def test_complete_sentence_ends_quickly(smart_turn: SmartTurn, text: str) -> None:
    """A complete sentence ends at the model's first query, well before the silence window."""
    speech = espeak(text)
    turn = run_turn(speech, smart_turn)
    end_of_voice = 500 + len(speech) * 1000 / WIRE_RATE
    (stopped,) = stops(turn)
    assert stopped - end_of_voice < 300, (stopped, end_of_voice)
    types = [e["type"] for e in turn.events]
    assert types == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]


@needs_model
@pytest.mark.parametrize("text", [
    'I would like to book a table for <break time="600ms"/> two people tonight.',
    'Can you tell me the way to the <break time="600ms"/> railway station?',
])
def test_sentence_cut_by_a_pause_does_not_end_at_the_pause(smart_turn: SmartTurn, text: str) -> None:
    """The pause asks the model, which hears an unfinished sentence: one turn, ended after
    the second half."""
    speech = espeak(f"<speak>{text}</speak>")
    turn = run_turn(speech, smart_turn)
    end_of_voice = 500 + len(speech) * 1000 / WIRE_RATE
    assert turn.queries >= 2
    assert stops(turn) and all(stop >= end_of_voice for stop in stops(turn)), (stops(turn), end_of_voice)

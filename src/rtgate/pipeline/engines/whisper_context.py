"""Short-context Whisper decoding: encode 10–20 s of audio context instead of 30 s.

Whisper's encoder takes a fixed 30 s window, so a 2 s utterance costs as much as a
30 s one (≈ 0.4 s of the ≈ 0.5 s a tiny.en call takes on 2 cores). CTranslate2 accepts a
shorter window: the positional embeddings are simply cut. Measured on the benchmark set
(ten espeak-ng utterances of 2–4 s, tiny.en int8, 2 cores; docs/engines.md):

=========  ===========  =====
context    median call  WER
=========  ===========  =====
30 s       0.53 s       11.4 %
15 s       0.22 s       11.4 %
10 s       0.09 s       12.5 %
audio+1–2 s 0.05 s      > 100 % (repetition loops)
=========  ===========  =====

So the context is the smallest of :data:`CONTEXT_BUCKETS_S` that leaves at least
:data:`MIN_TAIL_S` of silence after the audio; contexts much shorter than that make the
decoder loop. Longer audio, initial prompts and multilingual models (Whisper base loses
words on a short window: "lazy dog" became "rey-my-nong") use faster-whisper's regular
30 s path. The number of generated tokens is capped
in proportion to the audio so a loop cannot run away.

Contract: :func:`short_context_transcribe` returns the text, or ``None`` when the input
needs the regular path. It is thread-safe for a shared model (it does not change the
feature extractor's window).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rtgate.pipeline.base import MODEL_SAMPLE_RATE, FloatAudio

CONTEXT_BUCKETS_S = (10, 15, 20)
"""Encoder windows tried, shortest first (seconds)."""

MIN_TAIL_S = 5.0
"""Silence kept after the audio inside the window; less makes tiny.en repeat itself."""

TOKENS_PER_SECOND = 8
"""Generation cap: speech is at most ~4 words (~6 tokens) per second."""


def context_for(seconds: float) -> int | None:
    """The encoder window for ``seconds`` of audio, or ``None`` for the regular path."""
    for bucket in CONTEXT_BUCKETS_S:
        if seconds + MIN_TAIL_S <= bucket:
            return bucket
    return None


def short_context_transcribe(
    model: Any, samples: FloatAudio, *, language: str | None, prompt: str | None
) -> str | None:
    """Greedy, timestamp-free decoding of ``samples`` (16 kHz) on a short window."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    multilingual = bool(model.model.is_multilingual)
    context = context_for(samples.size / MODEL_SAMPLE_RATE)
    if context is None or prompt or multilingual:
        return None
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        multilingual,
        task="transcribe",
        language=language if multilingual else "en",
    )
    window = np.zeros(context * MODEL_SAMPLE_RATE, dtype=np.float32)
    window[: samples.size] = samples
    frames = context * 100  # 10 ms hop
    features = model.feature_extractor(window, chunk_length=30)[:, :frames]
    encoded = model.model.encode(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
    )
    result = model.model.generate(
        encoded,
        [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
        beam_size=1,
        max_length=min(448, 16 + math.ceil(samples.size / MODEL_SAMPLE_RATE * TOKENS_PER_SECOND)),
        suppress_blank=True,
        suppress_tokens=[-1],
    )
    tokens = [t for t in result[0].sequences_ids[0] if t < tokenizer.eot]
    return str(tokenizer.decode(tokens)).strip()

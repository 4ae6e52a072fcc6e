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

Contract: :func:`short_context_transcribe` returns a :class:`ShortResult` (the text and
the decoder's mean log-probability per token, the confidence the ``verified`` mode of
:class:`~rtgate.pipeline.engines.whisper.FasterWhisperSTT` checks), or ``None`` when the
input needs the regular path. It is thread-safe for a shared model (it does not change
the feature extractor's window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtgate.pipeline.base import MODEL_SAMPLE_RATE, FloatAudio
from rtgate.pipeline.engines.wer import normalise_words

CONTEXT_BUCKETS_S = (10, 15, 20)
"""Encoder windows tried, shortest first (seconds)."""

MIN_TAIL_S = 5.0
"""Silence kept after the audio inside the window; less makes tiny.en repeat itself."""

TOKENS_PER_SECOND = 8
"""Generation cap: speech is at most ~4 words (~6 tokens) per second."""

CONFIDENT_LOGPROB = -0.3
"""A short-window result at least this confident is kept without a check (``verified``).

Measured on 104 cuts of 13 espeak-ng utterances (lead silence 0–280 ms, tiny.en): no
short-window result at or above -0.3 had more word errors than the 30 s window on the
same audio; below it, both windows are often wrong (synthetic speech is hard for tiny.en)
and the short one was worse in 15 of the 104 cuts."""

PREFIX_AGREEMENT = 0.9
"""Share of a prefix pass's words (all but its last) that must reappear, in order, at
the start of a short-window final transcript for :func:`consistent_with_prefix`."""


@dataclass(frozen=True, slots=True)
class ShortResult:
    text: str
    avg_logprob: float
    """Mean log-probability of the generated tokens (end of text included); 0 is certain."""


def context_for(seconds: float) -> int | None:
    """The encoder window for ``seconds`` of audio, or ``None`` for the regular path."""
    for bucket in CONTEXT_BUCKETS_S:
        if seconds + MIN_TAIL_S <= bucket:
            return bucket
    return None


def consistent_with_prefix(reference: str | None, text: str) -> bool:
    """Whether ``text`` (a final transcript) starts the way ``reference`` did.

    ``reference`` is the transcript of an earlier prefix of the same utterance. Its last
    word is dropped (the prefix may cut it in half); at least two words must remain, and
    :data:`PREFIX_AGREEMENT` of them must be found in order among the first words of
    ``text`` (case and punctuation ignored). Two decodes of differently cut audio rarely
    agree on wrong words, so agreement is evidence the short window heard it right.
    """
    import difflib

    expected = normalise_words(reference or "")[:-1]
    if len(expected) < 2:
        return False
    heard = normalise_words(text)[: len(expected) + 2]
    matcher = difflib.SequenceMatcher(a=expected, b=heard, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched >= PREFIX_AGREEMENT * len(expected)


def short_context_transcribe(
    model: Any, samples: FloatAudio, *, language: str | None, prompt: str | None
) -> ShortResult | None:
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
        return_scores=True,
    )
    tokens = [t for t in result[0].sequences_ids[0] if t < tokenizer.eot]
    # CTranslate2's score is the sum of log-probabilities divided by the length (its
    # default length_penalty of 1): the mean per token.
    return ShortResult(str(tokenizer.decode(tokens)).strip(), float(result[0].scores[0]))

